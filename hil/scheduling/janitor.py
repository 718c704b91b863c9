"""The lab's janitor, beside its coordinator: frees places whose lease ran out, or that are
held without one, and runs the health checks that are due.

    hil lab janitor --coordinator HOST:PORT --lg-env ENV [--interval 86400] [--grace 30]

The virtual lab runs one inside `hil lab up`. A real lab runs it as a service next to its
coordinator, with an environment file whose target `main` is a RemotePlace named by
LG_PLACE (as places/virtual-lab.yaml), so that one file checks every place.

It reads the places from its client session's copy, which the coordinator's stream keeps
current: a round costs no call to the coordinator unless it acts, and it runs when something
changed or when the next lease or health check falls due, not on a timer.

Leases are judged on the janitor's own clock (`LeaseBook`): a lease counts from when the
janitor first saw its value, so a holder whose clock is off never loses its place early. A
place acquired by a client that never writes a lease (a `labgrid-client acquire` by hand, or
a session killed between its lock and its lease) is kicked after `grace` seconds: in this lab
every holder holds a lease.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hil.scheduling import health
from hil.scheduling.coordinator import Coordinator, CoordinatorError, Place
from hil.scheduling.metrics import LabMetrics, health_of
from hil.scheduling.placewatch import WATCH_TAG, PlaceWatchServer
from hil.scheduling.reservations import HOLDER_TAG, LEASE_TAG, lease_seconds

log = logging.getLogger("hil.janitor")
GRACE_S = 30.0
HEALTH_WAKE_S = 60.0  # health checks fall due by the wall clock: look this often
# Checks at once: each holds a place and boots a board, and a lab brought up with 50
# unchecked places saturated its coordinator when all 50 started together.
MAX_CHECKS = 4
# Updates come in bursts (a lock is one place update and one per resource, and a busy rack
# sends a hundred a second): a round at most this often takes a burst at once. Leases are
# judged in seconds.
ROUND_GAP_S = 0.1


class KickReason(enum.Enum):
    LEASE_EXPIRED = "lease-expired"  # not renewed within its lease
    NO_LEASE = "no-lease"  # held without a valid lease for longer than the grace
    BAD_LEASE = "bad-lease"  # a lease tag that is not a lease, on a free place


@dataclass(frozen=True)
class Kick:
    reason: KickReason
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class LeaseBook:
    """Each held place's lease on one clock, the janitor's (monotonic seconds)."""

    grace: float = GRACE_S
    seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # place -> (value, since)
    unleased: dict[str, float] = field(default_factory=dict)  # place -> since

    def expired(self, place: Place, now: float) -> Kick | None:
        """Why `place` must be freed now, or None."""
        value = place.tags.get(LEASE_TAG)
        seconds = lease_seconds(value)
        if place.acquired is None and not value:
            self.forget(place.name)
            return None
        if seconds is None:
            if place.acquired is None:
                return Kick(KickReason.BAD_LEASE,
                            f"a lease tag that is not a lease ({value!r}) on a free place")
            since = self.unleased.setdefault(place.name, now)
            self.seen.pop(place.name, None)
            if now - since > self.grace:
                return Kick(KickReason.NO_LEASE,
                            f"held by {place.acquired} without a valid lease for "
                            f"{now - since:.0f} s (grace {self.grace:g} s)")
            return None
        self.unleased.pop(place.name, None)
        assert value is not None
        old = self.seen.get(place.name)
        if old is None or old[0] != value:
            self.seen[place.name] = (value, now)
            return None
        if now - old[1] > seconds:
            holder = place.tags.get(HOLDER_TAG) or place.acquired or "a session"
            return Kick(KickReason.LEASE_EXPIRED,
                        f"lease of {holder} not renewed for {now - old[1]:.0f} s (lease "
                        f"{seconds:g} s"
                        f"{', not held since a coordinator restart' if place.acquired is None else ''})")
        return None

    def _deadlines(self) -> dict[str, float]:
        """Each place's end of lease, or of grace (expired() keeps a place in one book)."""
        ends = {name: since + (lease_seconds(value) or 0.0)
                for name, (value, since) in self.seen.items()}
        ends.update({name: since + self.grace for name, since in self.unleased.items()})
        return ends

    def due(self, now: float) -> set[str]:
        """The places whose lease or grace has run out by `now` (see expired())."""
        return {name for name, end in self._deadlines().items() if now > end}

    def forget(self, name: str) -> None:
        self.seen.pop(name, None)
        self.unleased.pop(name, None)

    def next_due(self, now: float) -> float:
        """Seconds until the earliest lease or grace could run out."""
        ends = self._deadlines().values()
        return max(0.0, min(ends) - now) if ends else float("inf")


# How long exporters take to come back after a coordinator restart: a restart by their
# service manager (3 s here), labgrid's start-up, and the lab-host VM's under TCG.
EXPORTERS_BACK_S = 45.0


class Janitor:
    def __init__(self, coordinator: Coordinator, env_file: Path, results: Path,
                 interval: float = 86400.0, grace: float = GRACE_S,
                 out: Callable[[str], None] = log.info,
                 check: Callable[[str, str, Path, Path], object] | None = None,
                 metrics: LabMetrics | None = None, max_checks: int = MAX_CHECKS,
                 watch_address: str | None = ""):
        """`check(address, place, env_file, results)`: a health check (default: the board
        cases, hil.scheduling.health.run_check). `metrics`: what it counts, for Prometheus.
        `watch_address`: where to serve holders the place they hold (hil.scheduling.placewatch;
        None: the coordinator's host; "": nowhere)."""
        self.coordinator = coordinator
        if watch_address is None:
            watch_address = coordinator.address.rsplit(":", 1)[0].strip("[]")
        self.watch = PlaceWatchServer(coordinator, watch_address) if watch_address else None
        self.env_file = env_file
        self.results = results
        self.interval = interval
        self.out = out
        self.stop = threading.Event()
        self.leases = LeaseBook(grace)
        self.rounds = 0
        self.check = check
        self._checking: dict[str, threading.Thread] = {}
        self.checks_from = 0.0  # monotonic: no health check starts before (see settled())
        self.metrics = metrics
        self.max_checks = max_checks
        self.scans = 0  # rounds that read every place
        self._next_scan = float("-inf")
        self._checks_waiting = False
        # Each place's available resources as last seen whole, and since when some have been
        # missing or unavailable.
        self._resources_seen: dict[str, frozenset[str]] = {}
        self._missing_since: dict[str, float] = {}

    def round(self, now: float | None = None, mono: float | None = None) -> None:
        """Look at what changed since the last round and at the leases that fell due; at
        every place only after a reconnection, every HEALTH_WAKE_S (health checks fall due
        by the clock) and while checks wait for a slot. A rack's every lock and release
        wakes the janitor, and reading all N places each time was most of its CPU."""
        now = time.time() if now is None else now
        mono = time.monotonic() if mono is None else mono
        self.rounds += 1
        everything, changed = self.coordinator.take_changes()
        self._checking = {p: t for p, t in self._checking.items() if t.is_alive()}
        if everything or mono >= self._next_scan or self._checks_waiting:
            places = self.coordinator.places()
            self._next_scan = mono + HEALTH_WAKE_S
            self.scans += 1
        else:
            places = self._look(changed | self.leases.due(mono))
        if self.metrics is not None:
            self.metrics.saw(places, now)
        if self.watch is not None:
            for place in places:
                if place.tags.get(WATCH_TAG) != self.watch.url:  # holders find it here
                    self.coordinator.set_tags(place.name, {WATCH_TAG: self.watch.url})
        for place in places:
            kick = self.leases.expired(place, mono)
            if kick is not None:
                self._free(place, kick, now)
        # Each check in its own thread, one per place at a time (boards boot in parallel, as
        # sessions do): leases keep being watched meanwhile.
        self._checks_waiting = False
        for place in places:
            if self.stop.is_set():
                return
            away = self._exporter_away(place, mono)
            if place.name in self._checking or not health.needs_check(place, now,
                                                                       self.interval):
                continue
            if away:
                # Checked once its resources are back, or EXPORTERS_BACK_S after they went
                # (a session that lost them may end, and ask for a check, before its
                # exporter has restarted).
                self._checks_waiting = True
                continue
            if mono < self.checks_from or len(self._checking) >= self.max_checks:
                # Exporters still coming back (a check now would fail on them), or no slot
                # free: the next rounds look at every place until this one has its check.
                self._checks_waiting = True
                return
            t = threading.Thread(target=self._check, args=(place.name, now),
                                 name=f"health-{place.name}", daemon=True)
            self._checking[place.name] = t
            t.start()

    def _exporter_away(self, place: Place, mono: float) -> bool:
        seen = self._resources_seen.get(place.name, frozenset())
        if not health.resources_missing(place, seen):
            self._resources_seen[place.name] = health.available(place)
            self._missing_since.pop(place.name, None)
            return False
        return mono - self._missing_since.setdefault(place.name, mono) < EXPORTERS_BACK_S

    def _look(self, names: Iterable[str]) -> list[Place]:
        places = []
        for name in sorted(names):
            try:
                places.append(self.coordinator.place(name))
            except CoordinatorError:
                self.leases.forget(name)  # deleted, or the stream is being re-established
        return places

    def _free(self, place: Place, kick: Kick, now: float) -> None:
        why = kick.message
        self.out(f"janitor: {place.name}: {why}: kicking")
        # Unknown before it comes free: nobody may take it as good in between.
        health.mark(self.coordinator, place.name, "unknown", f"{why}: the session vanished")
        self.coordinator.set_tags(place.name, {LEASE_TAG: "", HOLDER_TAG: ""})
        if place.acquired is not None:
            self.coordinator.release(place.name, only_from=place.acquired)
        self._cancel_reservations_of(place.name)
        self.leases.forget(place.name)
        if self.metrics is not None:
            self.metrics.kicked(kick.reason.value, kick.reason is KickReason.LEASE_EXPIRED)

    def _cancel_reservations_of(self, place: str) -> None:
        """The vanished session's reservation keeps its place allocated until the coordinator
        expires it (a minute without a poll), which would hold back everyone, the health check
        included. A place that was acquired is allocated to no one else: cancel what holds it."""
        for r in self.coordinator.reservations():
            if r.allocation == place:
                self.out(f"janitor: {place}: cancelling the vanished session's reservation "
                         f"{r.token} ({r.owner})")
                self.coordinator.cancel(r.token)

    def _check(self, place: str, now: float) -> None:
        try:
            if self.check is not None:
                self.check(self.coordinator.address, place, self.env_file,
                           self.results / f"{place}-{int(now)}")
                outcome = health_of(self.coordinator.place(place))
            else:
                outcome, _ = health.run_check(self.coordinator.address, place, self.env_file,
                                              self.results / f"{place}-{int(now)}",
                                              progress=self.out)
        except Exception as e:  # the janitor outlives any one check
            outcome = "error"
            self.out(f"janitor: health check of {place} could not run: {e}")
            health.mark(self.coordinator, place, "bad", f"health check could not run: {e}")
        if self.metrics is not None:
            self.metrics.checked(outcome)

    def run(self) -> None:
        """Until `stop`: a round on every update of the coordinator, and when a lease, the
        grace or the health interval falls due."""
        generation = -1
        connections = self.coordinator.connections
        while not self.stop.is_set():
            if self.coordinator.connections != connections:
                # The coordinator restarted: nobody could renew while it was away, so every
                # lease counts afresh from now.
                connections = self.coordinator.connections
                self.leases = LeaseBook(self.leases.grace)
                self.reconnected(time.monotonic())
            try:
                self.round()
            except (CoordinatorError, OSError) as e:
                self.out(f"janitor: {e}")
            now = last = time.monotonic()
            wait = min(self.leases.next_due(now) + 0.05, HEALTH_WAKE_S)
            if now < self.checks_from:
                wait = min(wait, self.checks_from - now + 0.05)
            if self._checking or self._checks_waiting:
                wait = min(wait, 5.0)  # a check that ends frees its slot
            wait = min(wait, max(0.0, self._next_scan - now))
            generation = self.coordinator.wait_for_change(generation, wait)
            if (rest := last + ROUND_GAP_S - time.monotonic()) > 0:
                self.stop.wait(rest)

    def reconnected(self, mono: float) -> None:
        """After a coordinator restart, labgrid's exporters end and come back (a lab host's
        service manager starts them again): a health check in between would find a place
        without its consoles and mark it bad for a whole interval. Checks wait this long."""
        self.checks_from = mono + EXPORTERS_BACK_S

    def close(self) -> None:
        self.stop.set()
        if self.metrics is not None:
            self.metrics.close()
        if self.watch is not None:
            self.watch.close()
        self.coordinator.close()
