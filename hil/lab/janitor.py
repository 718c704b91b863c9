"""The lab's janitor, beside its coordinator: frees places whose lease ran out and runs the
health checks that are due.

    hil lab janitor --coordinator HOST:PORT --lg-env ENV [--interval 86400] [--period 2]

The virtual lab runs one inside `hil lab up`. A real lab runs it as a service next to its
coordinator, with an environment file whose target `main` is a RemotePlace named by
LG_PLACE (as places/virtual-lab.yaml), so that one file checks every place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hil.lab import health
from hil.lab.coordinator import Coordinator, CoordinatorError
from hil.lab.reservations import HOLDER_TAG, LEASE_TAG, lease_expired

log = logging.getLogger("hil.janitor")


class Janitor:
    def __init__(self, coordinator: Coordinator, env_file: Path, results: Path,
                 interval: float = 86400.0, period: float = 2.0,
                 out: Callable[[str], None] = log.info):
        self.coordinator = coordinator
        self.env_file = env_file
        self.results = results
        self.interval = interval
        self.period = period
        self.out = out
        self.stop = threading.Event()
        self.expired: dict[str, float] = {}  # place -> when its lease was found expired
        self._checking: dict[str, threading.Thread] = {}

    def round(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for place in self.coordinator.places():
            if lease_expired(place, now):
                holder = place.tags.get(HOLDER_TAG, place.acquired)
                self.out(f"janitor: {place.name}: lease of {holder} expired "
                         f"{now - float(place.tags.get(LEASE_TAG) or now):.0f} s ago: kicking")
                # Unknown before it comes free: nobody may take it as good in between.
                health.mark(self.coordinator, place.name, "unknown",
                            f"lease of {holder} expired: the session vanished")
                self.coordinator.set_tags(place.name, {LEASE_TAG: "", HOLDER_TAG: ""})
                self.coordinator.release(place.name, kick=True)
                self._cancel_reservations_of(place.name)
                self.expired[place.name] = now
        # Each check in its own thread, one per place at a time (boards boot in parallel, as
        # sessions do): leases keep being watched meanwhile.
        self._checking = {p: t for p, t in self._checking.items() if t.is_alive()}
        for place in self.coordinator.places():
            if self.stop.is_set():
                return
            if place.name not in self._checking and health.needs_check(place, now, self.interval):
                t = threading.Thread(target=self._check, args=(place.name, now),
                                     name=f"health-{place.name}", daemon=True)
                self._checking[place.name] = t
                t.start()

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
            health.run_check(self.coordinator, place, self.env_file,
                             self.results / f"{place}-{int(now)}", progress=self.out)
        except Exception as e:  # the janitor outlives any one check
            self.out(f"janitor: health check of {place} could not run: {e}")
            health.mark(self.coordinator, place, "bad", f"health check could not run: {e}")

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.round()
            except (CoordinatorError, OSError) as e:
                self.out(f"janitor: {e}")
            self.stop.wait(self.period)
