"""Holding a place of a lab for one session: reserve, wait, lock, keep, notice loss, release.

On top of labgrid's coordinator, without changing it:
- labgrid's reservation (`reserve`, kept alive by `wait`'s polls) orders the waiting sessions
  by priority, then age; once allocated, the session `acquire`s (locks) the place.
- A lock never expires in labgrid, so the session also holds a lease: the place's tag
  `hil-lease` is the time (Unix seconds) until which the holder vouches for it, renewed every
  third of the lease. The lab's janitor (`hil.lab.janitor`) kicks a place whose lease ran out:
  a session killed with SIGKILL, or a machine that lost power, frees its place within the
  lease plus one janitor round.
- While it holds the place, a watch thread looks every second whether the place is still
  acquired by this client, its resources are still there (the exporter is up) and its power
  switch answers; the first that fails is the loss, which the session ends on as an
  infrastructure error.
Sessions reserve healthy places only (`health=good`, set by the health check,
`hil.lab.health`).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from hil.errors import InfrastructureError
from hil.lab.coordinator import CLIENT, Coordinator, CoordinatorError, Place

LEASE_TAG = "hil-lease"
HOLDER_TAG = "hil-holder"
HEALTH_TAG = "health"


class ReservationTimeout(InfrastructureError):
    """No matching place became free in time."""


class PlaceLost(InfrastructureError):
    """The place was taken away, or its lab failed, during the session."""


def me(environ: Mapping[str, str] = os.environ) -> str:
    """This client as labgrid names a place's holder."""
    return (f"{environ.get('LG_HOSTNAME') or socket.gethostname()}/"
            f"{environ.get('LG_USERNAME') or getpass.getuser()}")


def parse_request(words: list[str]) -> dict[str, str]:
    """`tag=value` words (`name=PLACE` for one place) as labgrid's reserve takes them."""
    out = {}
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k or not v or not all(c.isalnum() or c in "-_." for c in k + v):
            raise ValueError(f"a reservation filter is tag=value (letters, digits, -_.), "
                             f"got {w!r}")
        out[k] = v
    if not out:
        raise ValueError("a reservation needs at least one tag=value or name=PLACE")
    return out


def lease_expired(place: Place, now: float) -> bool:
    """A place held under a lease that nobody renewed."""
    value = place.tags.get(LEASE_TAG)
    if place.acquired is None or not value:
        return False
    try:
        return float(value) < now
    except ValueError:
        return True  # garbage in our own tag: nobody can be renewing it


def loss(place: Place, holder: str, switch_answers: bool | None,
         expected: Collection[str] = ()) -> str | None:
    """Why a held place is no longer this session's to use, or None. `expected`: the
    resources it had when acquired (an exporter that goes away takes its own from the list,
    and a place may match the resources of several exporters)."""
    if place.acquired != holder:
        return (f"place {place.name} was taken away: now held by {place.acquired}"
                if place.acquired else f"place {place.name} was released by someone else")
    gone = [path for path, avail in place.resources.items() if not avail]
    gone += sorted(path for path in expected if path not in place.resources)
    if not place.resources or gone:
        return (f"place {place.name}: its resources went away ({', '.join(gone) or 'all'}): "
                "is the exporter running?")
    if switch_answers is False:
        return f"place {place.name}: its power switch stopped answering"
    return None


# labgrid's coordinator releases a place's resources before it clears `acquired`: for as long
# as the exporter takes to release them, a place kicked by another client looks like one whose
# exporter went away. A loss of resources is named only once it outlasts this.
SETTLE_S = 4.0


def resources_gone(why: str) -> bool:
    return "its resources went away" in why


def lab_fault(why: str) -> bool:
    """A loss the place's lab caused (a health check should follow), not another client."""
    return not ("was taken away" in why or "was released by someone else" in why)


def switch_url(place: Place, show: str) -> str | None:
    """The power switch's URL from `show`'s NetworkPowerPort parameters, if it has one."""
    for block in re.split(r"^(?:Matching|Acquired) resource ", show, flags=re.MULTILINE)[1:]:
        if "'cls': 'NetworkPowerPort'" in block:
            m = re.search(r"'host': '([^']+)'", block)
            return m.group(1) if m else None
    return None


def answers(url: str, timeout: float = 2.0) -> bool:
    """Any HTTP answer counts (a 401 is a switch that is there)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


@dataclass
class Hold:
    """What a session holds; `lost` is set by the watch thread."""

    place: str
    token: str
    lost: str | None = None


class PlaceReservation:
    """Reserve a healthy place matching `filters`, wait for it, lock it, keep it."""

    def __init__(self, coordinator: Coordinator, filters: Mapping[str, str], prio: float = 0.0,
                 timeout: float = 600.0, lease: float = 60.0, healthy_only: bool = True,
                 progress: Callable[[str], None] = print,
                 on_loss: Callable[[str], None] | None = None):
        self.coordinator = coordinator
        self.filters = dict(filters)
        if healthy_only:
            self.filters.setdefault(HEALTH_TAG, "good")
        self.prio = prio
        self.timeout = timeout
        self.lease = lease
        self.progress = progress
        self.on_loss = on_loss
        # The resources the place had once acquired (see loss()).
        self._expected: set[str] = set()
        self.holder = me()
        self.hold: Hold | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.timings: dict[str, float] = {}

    def __enter__(self) -> Hold:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> Hold:
        t0 = time.monotonic()
        token = self.coordinator.reserve(self.filters, self.prio)
        # labgrid's own poller keeps the reservation alive and returns once it is allocated.
        waiter = subprocess.Popen([CLIENT, "-x", self.coordinator.address, "wait", token],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        last = 0.0
        try:
            while waiter.poll() is None:
                waited = time.monotonic() - t0
                if waited > self.timeout:
                    raise ReservationTimeout(
                        f"no place matching {self._want()} was free within "
                        f"{self.timeout:.0f} s; `hil lab status` shows who holds what")
                if waited - last >= 5:
                    last = waited
                    self.progress(self._queue_line(token, waited))
                time.sleep(0.2)
            if waiter.returncode != 0:
                raise CoordinatorError(f"reservation {token} for {self._want()} ended: "
                                       f"{(waiter.stderr.read() if waiter.stderr else '').strip()}")
            allocated = next((r.allocation for r in self.coordinator.reservations()
                              if r.token == token), None)
            if allocated is None:
                raise CoordinatorError(f"reservation {token} was allocated no place")
            self.timings["reserve_wait_s"] = time.monotonic() - t0
            self.coordinator.run("-p", allocated, "acquire", env={**os.environ, "LG_TOKEN": token})
        except BaseException:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
            self.coordinator.cancel(token)
            raise
        self.hold = Hold(allocated, token)
        self._renew()
        self.timings["reserve_and_lock_s"] = time.monotonic() - t0
        self.progress(f"reservation: holding {allocated} (waited {self.timings['reserve_wait_s']:.1f} s, "
                      f"lease {self.lease:.0f} s)")
        self._watch = threading.Thread(target=self._keep, name="hil-lease", daemon=True)
        self._watch.start()
        return self.hold

    def _want(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.filters.items())

    def _queue_line(self, token: str, waited: float) -> str:
        try:
            queue = [r for r in self.coordinator.reservations() if r.state == "waiting"]
        except CoordinatorError:
            return f"reservation: waiting for {self._want()} ({waited:.0f} s)"
        queue.sort(key=lambda r: (-r.prio, r.created))
        ahead = next((i for i, r in enumerate(queue) if r.token == token), len(queue))
        return (f"reservation: waiting for {self._want()} ({waited:.0f} s, {ahead} waiting "
                "ahead)")

    def _holder_tag(self) -> str:
        return f"{self.holder.replace('/', '.')}.{os.getpid()}"

    def _renew(self) -> None:
        assert self.hold is not None
        self.coordinator.set_tags(self.hold.place, {
            LEASE_TAG: f"{time.time() + self.lease:.0f}", HOLDER_TAG: self._holder_tag()})

    def _keep(self) -> None:
        assert self.hold is not None
        next_renewal = time.monotonic() + self.lease / 3
        url: str | None = None
        while not self._stop.wait(1.0):
            try:
                shown = self.coordinator.run("-p", self.hold.place, "show", timeout=10).stdout
                from hil.lab.coordinator import parse_place

                place = parse_place(shown)
                url = url or switch_url(place, shown)
                if not self._expected:
                    self._expected = {p for p, avail in place.resources.items() if avail}
                why = self._settled(loss(place, self.holder, answers(url) if url else None,
                                         self._expected))
                if why is None and time.monotonic() >= next_renewal:
                    self._renew()
                    next_renewal = time.monotonic() + self.lease / 3
            except (CoordinatorError, ValueError) as e:
                why = f"the coordinator stopped answering: {e}"
            if why is not None and not self._stop.is_set():
                self.hold.lost = why
                if self.on_loss is not None:
                    self.on_loss(why)
                return

    def why_lost(self) -> str | None:
        """One look now (without the watch): why the place is no longer ours to use, if so."""
        if self.hold is None:
            return None
        try:
            shown = self.coordinator.run("-p", self.hold.place, "show", timeout=10).stdout
            from hil.lab.coordinator import parse_place

            place = parse_place(shown)
            url = switch_url(place, shown)
            why = loss(place, self.holder, answers(url) if url else None, self._expected)
        except (CoordinatorError, ValueError) as e:
            return f"the coordinator stopped answering: {e}"
        return self._settled(why)

    def _settled(self, why: str | None) -> str | None:
        """`why`, unless resources that went away turn out to be a release in progress."""
        if why is None or not resources_gone(why) or self.hold is None:
            return why
        from hil.lab.coordinator import parse_place

        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                place = parse_place(self.coordinator.run("-p", self.hold.place, "show",
                                                         timeout=10).stdout)
            except (CoordinatorError, ValueError):
                return why
            if place.acquired != self.holder:
                return loss(place, self.holder, None)
        # Still ours: the resources did go away (an exporter restarted by its service manager
        # comes back with them, but what the session had through them is gone).
        return why

    def stop_watching(self) -> None:
        self._stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(15)

    def release(self) -> None:
        """Idempotent; on every way out."""
        self.stop_watching()
        hold, self.hold = self.hold, None
        if hold is None:
            return
        with contextlib.suppress(InfrastructureError):
            place = self.coordinator.place(hold.place)
            ours = place.tags.get(HOLDER_TAG) == self._holder_tag()
            if place.acquired == self.holder or (ours and place.acquired is None):
                # Also after a kick: our lease must not linger on the free place.
                self.coordinator.set_tags(hold.place, {LEASE_TAG: "", HOLDER_TAG: ""})
            if place.acquired == self.holder:
                self.coordinator.release(hold.place)
        self.coordinator.cancel(hold.token)
