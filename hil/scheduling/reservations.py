"""Holding a place of a lab for one session: reserve, wait, lock, keep, notice loss, release.

On top of labgrid's coordinator, without changing it:
- Each session is a client of its own (`hil.scheduling.coordinator.identity`): a pytest run, a
  health check, each board of a release. Two sessions of one user on one host are two
  holders, served one after the other, and neither can renew or release the other's place.
- labgrid's reservation orders the waiting sessions by priority, then age; once it is
  allocated, the session `acquire`s (locks) the place. It waits on the coordinator's stream of
  updates and polls its reservation only to keep it alive.
- A lock never expires in labgrid, so the session also holds a lease: the place's tag
  `hil-lease` says `RENEWED+SECONDS` (RENEWED by the holder's clock, for people to read),
  rewritten every third of the lease. The lab's janitor (`hil.scheduling.janitor`) judges each lease
  on its own clock, from when it first saw that value, and kicks a place whose lease was not
  renewed in time, or that stays acquired without a lease longer than a grace period.
- While it holds the place, the session's watch wakes on every update of the coordinator and
  checks that the place is still acquired by this session, that its resources are still
  there (the exporter is up), and every few seconds that its power switch answers; the first
  that fails is the loss (`Loss`), which the session ends on as an infrastructure error.
- A coordinator restart forgets every lock and reservation but keeps the tags. The session
  waits for it within its lease and takes its place back; other hil sessions leave a place
  alone while it carries another holder's lease.
Sessions reserve healthy places only (`health=good`, set by the health check,
`hil.scheduling.health`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from labgrid.util import Timeout

from hil.errors import InfrastructureError
from hil.scheduling.coordinator import Coordinator, CoordinatorError, CoordinatorUnreachable, Place, identity
from hil.scheduling.placewatch import WATCH_TAG, RelayGone, RelayView

LEASE_TAG = "hil-lease"
HOLDER_TAG = "hil-holder"
HEALTH_TAG = "health"
MIN_LEASE_S = 10.0  # renewed every third: shorter would race the janitor's own rounds
MAX_LEASE_S = 86400.0
POLL_S = 10.0  # a reservation nobody polls expires after 60 s
SWITCH_CHECK_S = 2.0
# A place taken back after a coordinator restart goes ahead of any waiting session.
RETAKE_PRIO = 1e9


class ReservationTimeout(InfrastructureError):
    """No matching place became free in time."""


class PlaceLost(InfrastructureError):
    """The place was taken away, or its lab failed, during the session."""


class Loss(StrEnum):
    TAKEN = "taken"  # another client holds it now
    RELEASED = "released"  # someone else released it
    RESOURCES_GONE = "resources-gone"  # its exporter went away
    SWITCH_SILENT = "switch-silent"  # its power switch stopped answering
    COORDINATOR_GONE = "coordinator-gone"  # not back (or the place not retaken) within the lease
    # It restarted during the run: labgrid's exporters end with its stream and end their
    # consoles (ser2net) with them, so a case on a console fails even if the place is retaken.
    COORDINATOR_RESTARTED = "coordinator-restarted"

    @property
    def lab_fault(self) -> bool:
        """A loss the place's lab caused (a health check should follow), not another client."""
        return self not in (Loss.TAKEN, Loss.RELEASED)


@dataclass(frozen=True)
class Lost:
    reason: Loss
    detail: str

    def __str__(self) -> str:
        return self.detail


def lease_problem(seconds: float) -> str | None:
    """Why `--hil-lease SECONDS` cannot be a lease; None if it can."""
    if not math.isfinite(seconds) or not MIN_LEASE_S <= seconds <= MAX_LEASE_S:
        return (f"--hil-lease {seconds:g}: a lease is between {MIN_LEASE_S:g} and "
                f"{MAX_LEASE_S:g} seconds (it is renewed every third of it)")
    return None


def lease_value(now: float, seconds: float) -> str:
    return f"{now:.0f}+{seconds:g}"


def lease_seconds(value: str | None) -> float | None:
    """The duration a lease tag vouches for; None when it is not a valid lease."""
    if not value:
        return None
    _, sep, seconds = value.partition("+")
    try:
        s = float(seconds)
    except ValueError:
        return None
    return s if sep and math.isfinite(s) and MIN_LEASE_S <= s <= MAX_LEASE_S else None


def holder_tag(holder: str) -> str:
    return holder.replace("/", ".")


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


def loss(place: Place, holder: str, switch_answers: bool | None,
         expected: Collection[str] = ()) -> Lost | None:
    """Why a held place is no longer this session's to use, or None. `expected`: the
    resources it had when acquired (an exporter that goes away takes its own from the list,
    and a place may match the resources of several exporters)."""
    if place.acquired != holder:
        if place.acquired:
            return Lost(Loss.TAKEN, f"place {place.name} was taken away: now held by "
                                    f"{place.acquired}")
        return Lost(Loss.RELEASED, f"place {place.name} was released by someone else")
    gone = [path for path, avail in place.resources.items() if not avail]
    gone += sorted(path for path in expected if path not in place.resources)
    if not place.resources or gone:
        return Lost(Loss.RESOURCES_GONE, f"place {place.name}: its resources went away "
                                         f"({', '.join(gone) or 'all'}): is the exporter running?")
    if switch_answers is False:
        return Lost(Loss.SWITCH_SILENT, f"place {place.name}: its power switch stopped answering")
    return None


def leased_by_another(place: Place, holder: str) -> bool:
    """A free place that still carries another session's lease: after a coordinator restart,
    its holder is coming back for it (the janitor clears a lease nobody renews)."""
    return (place.acquired is None and lease_seconds(place.tags.get(LEASE_TAG)) is not None
            and place.tags.get(HOLDER_TAG) not in (None, holder_tag(holder)))


# labgrid's coordinator releases a place's resources before it clears `acquired`: for as long
# as the exporter takes to release them, a place kicked by another client looks like one whose
# exporter went away. A loss of resources is named only once it outlasts this.
SETTLE_S = 4.0
LOOK_AGAIN_S = 0.25  # between looks while settling without the watch


def switch_url(place: Place) -> str | None:
    """The power switch's URL from the place's NetworkPowerPort parameters, if it has one
    (with its outlet for a URL template, as labgrid's `rest` models take)."""
    for path, params in place.params.items():
        if path.split("/")[2:3] == ["NetworkPowerPort"]:
            host = params.get("host")
            if not host:
                return None
            return str(host).replace("{index}", str(params.get("index", "")))
    return None


# A relay's (hil.virtual_lab.power.relay) answers when the switch behind it is silent or failing.
SWITCH_BEHIND_FAILS = (502, 504)


def answers(url: str, timeout: float = 2.0) -> bool:
    """Any HTTP answer counts (a 401 is a switch that is there), but a relay's saying that
    the switch behind it does not answer."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError as e:
        return e.code not in SWITCH_BEHIND_FAILS
    except (OSError, ValueError):
        return False
    return True


@dataclass
class Hold:
    """What a session holds; `lost` is set by the watch thread."""

    place: str
    token: str
    lost: Lost | None = None


class PlaceReservation:
    """Reserve a healthy place matching `filters`, wait for it, lock it, keep it.

    `coordinator`: an address (this reservation is then a client of its own, named for
    `purpose`, closed on release) or a Coordinator to use."""

    def __init__(self, coordinator: Coordinator | str, filters: Mapping[str, str],
                 prio: float = 0.0, timeout: float = 600.0, lease: float = 60.0,
                 healthy_only: bool = True, progress: Callable[[str], None] = print,
                 on_loss: Callable[[Lost], None] | None = None, purpose: str = "session"):
        if (why := lease_problem(lease)) is not None:
            raise ValueError(why)
        self._owned = isinstance(coordinator, str)
        self.coordinator = (Coordinator(coordinator, identity(purpose))
                            if isinstance(coordinator, str) else coordinator)
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
        self.holder = self.coordinator.name
        self.hold: Hold | None = None
        self._token: str | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._lock = threading.Lock()  # acquire/renew/release against each other
        self.timings: dict[str, float] = {}
        self.watch_cpu_s = 0.0  # CPU the watch thread spent, once it has ended
        self.restarts = 0  # coordinator restarts the watch saw while the place was held
        self._connections_seen = 0
        # The janitor's watch on the held place, while this client has left the stream (see
        # hil.scheduling.placewatch); None: the client's own stream.
        self._relay: RelayView | None = None
        self.relayed = False  # the watch followed the place through the janitor at some point

    def __enter__(self) -> Hold:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- taking the place -------------------------------------------------------------------

    def acquire(self) -> Hold:
        """Reserve, wait for the allocation, lock, write the lease. Interrupted anywhere
        (an error, a signal), `release()` undoes whatever of it was done."""
        t0 = time.monotonic()
        place = self._wait_for_allocation(self.filters, self.prio, Timeout(float(self.timeout)))
        self.timings["reserve_wait_s"] = time.monotonic() - t0
        with self._lock:
            self.coordinator.acquire(place)
            self.hold = Hold(place, self._token or "")
            self._renew()
        self.coordinator.interest = frozenset({place})  # the watch wakes for its place only
        self.coordinator.follow_only(place)  # and this client keeps no other place
        self._follow_through_janitor(place)
        self._connections_seen = self._view().connections
        self.timings["reserve_and_lock_s"] = time.monotonic() - t0
        self.progress(f"reservation: holding {place} as {self.holder} (waited "
                      f"{self.timings['reserve_wait_s']:.1f} s, lease {self.lease:.0f} s)")
        self._watch = threading.Thread(target=self._keep, name="hil-lease", daemon=True)
        self._watch.start()
        return self.hold

    def _wait_for_allocation(self, filters: Mapping[str, str], prio: float,
                             limit: Timeout) -> str:
        c = self.coordinator
        connections = c.connections
        self._token = token = c.reserve(filters, prio)
        t0 = last_poll = last_line = time.monotonic()
        generation = c.generation
        while True:
            now = time.monotonic()
            if limit.expired:
                raise ReservationTimeout(
                    f"no place matching {self._want(filters)} was free within "
                    f"{now - t0:.0f} s; `hil lab status` shows who holds what")
            try:
                if c.connections != connections:
                    # A restarted coordinator forgot every reservation: queue again.
                    connections = c.connections
                    self._token = token = c.reserve(filters, prio)
                if now - last_poll >= POLL_S:
                    last_poll = now
                    state = c.poll(token).state
                    if state in ("expired", "invalid"):
                        raise CoordinatorError(f"reservation {token} for "
                                               f"{self._want(filters)} ended: {state}")
                allocated = c.allocated_to(token)
            except CoordinatorUnreachable:
                c.wait_connected(max(0.1, limit.remaining))
                continue
            if allocated is not None:
                if not leased_by_another(allocated, self.holder):
                    return allocated.name
                # Its holder is coming back after a coordinator restart: step aside (a
                # reservation made afresh waits behind the holder's own).
                c.cancel(token)
                c.wait_for_change(c.generation, 1.0)
                self._token = token = c.reserve(filters, prio)
            if now - last_line >= 5:
                last_line = now
                self.progress(self._queue_line(token, filters, now - t0))
            generation = c.wait_for_change(generation, 1.0)

    @staticmethod
    def _want(filters: Mapping[str, str]) -> str:
        return " ".join(f"{k}={v}" for k, v in filters.items())

    def _queue_line(self, token: str, filters: Mapping[str, str], waited: float) -> str:
        try:
            queue = [r for r in self.coordinator.reservations() if r.state == "waiting"]
        except CoordinatorError:
            return f"reservation: waiting for {self._want(filters)} ({waited:.0f} s)"
        queue.sort(key=lambda r: (-r.prio, r.created))
        ahead = next((i for i, r in enumerate(queue) if r.token == token), len(queue))
        return (f"reservation: waiting for {self._want(filters)} ({waited:.0f} s, {ahead} "
                "waiting ahead)")

    # --- where the watch reads the place --------------------------------------------------

    def _view(self) -> RelayView | Coordinator:
        return self._relay or self.coordinator

    def _follow_through_janitor(self, place: str, catch_up: float = 5.0,
                                quiet: bool = False) -> None:
        """Follow the held place through the janitor's watch and leave the stream, if the lab
        offers one (the place's hil-watch tag) and this reservation owns its client."""
        c = self.coordinator
        if not self._owned or c.detached:
            return
        try:
            url = c.place(place).tags.get(WATCH_TAG)
            if not url:
                return
            relay = RelayView(url, place)
            # The janitor's copy must show our lock before the watch judges by it.
            caught_up = Timeout(catch_up)
            while relay.place(place).acquired != self.holder:
                if caught_up.expired:
                    relay.close()
                    return
                relay.wait_for_change(relay.generation, caught_up.remaining)
        except (RelayGone, CoordinatorError) as e:
            if not quiet:
                self.progress(f"reservation: following {place} on this client's own stream "
                              f"({e})")
            return
        c.detach()
        self._relay = relay
        self.relayed = True

    def _leave_janitor(self, timeout: float) -> bool:
        """Back to this client's own stream (the relay is gone, or the place must be taken
        back after a coordinator restart); False if it does not connect within `timeout`."""
        self._drop_relay()
        return self.coordinator.reattach(timeout)

    def _drop_relay(self, keep: bool = False) -> None:
        """`keep`: the connection to the janitor serves this process's next hold, if the
        watch no longer uses it."""
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close(keep=keep and (self._watch is None or not self._watch.is_alive()))

    def _renew(self) -> None:
        assert self.hold is not None
        self.coordinator.set_tags(self.hold.place, {
            LEASE_TAG: lease_value(time.time(), self.lease), HOLDER_TAG: holder_tag(self.holder)})

    # --- keeping it -------------------------------------------------------------------------

    def _keep(self) -> None:
        try:
            self._watch_loop()
        finally:
            self.watch_cpu_s = time.thread_time()

    def _watch_loop(self) -> None:
        assert self.hold is not None
        v = self._view()
        renewed = time.monotonic()
        switch_checked = 0.0
        switch: bool | None = None
        url: str | None = None
        looked = False  # the first look is at once: it learns whether there is a switch
        first = True
        generation: object = v.generation
        connections = v.connections
        while not self._stop.is_set():
            now = time.monotonic()
            next_renewal = renewed + self.lease / 3
            due = next_renewal
            if not looked:
                due = now
            elif url:  # a place without a power switch has nothing to ask between updates
                due = min(due, switch_checked + SWITCH_CHECK_S)
            try:
                if first:  # the first look is at the place as the view has it already
                    first = False
                else:
                    generation = v.wait_for_change(generation, max(0.05, due - now))  # type: ignore[arg-type]
            except RelayGone as e:
                if self._stop.is_set():
                    return
                self.progress(f"reservation: {e}; following {self.hold.place} on this "
                              "client's own stream")
                self._leave_janitor(max(1.0, renewed + self.lease - time.monotonic()))
                v = self._view()
                generation, connections = v.generation, v.connections
                self._connections_seen = connections
                continue
            if self._stop.is_set():
                return
            now = time.monotonic()
            why: Lost | None
            try:
                if not v.connected or v.connections != connections:
                    self.restarts += 1
                    why = self._come_back(
                        Timeout(max(0.0, renewed + self.lease - time.monotonic())))
                    v = self._view()
                    generation = v.generation
                    connections = self._connections_seen = v.connections
                    if why is None:
                        renewed = time.monotonic()
                        continue
                else:
                    place = v.place(self.hold.place)
                    url = url or switch_url(place)
                    looked = True
                    if url and now - switch_checked >= SWITCH_CHECK_S:
                        switch_checked = now
                        switch = answers(url)
                    if not self._expected:
                        self._expected = {p for p, avail in place.resources.items() if avail}
                    why = self._settled(loss(place, self.holder, switch, self._expected))
                    if why is None and now >= next_renewal:
                        if self.relayed and self._relay is None:
                            # Back to the janitor's watch once it answers again; before the
                            # renewal, which then goes by a unary call and cannot wait on a
                            # stream that has just come back (seen: its sync unanswered for
                            # the call's 30 s after a coordinator restart).
                            self._follow_through_janitor(self.hold.place, quiet=True)
                            if self._relay is not None:
                                v = self._view()
                                generation = v.generation
                                connections = self._connections_seen = v.connections
                        with self._lock:
                            if self.hold is not None:
                                self._renew()
                        renewed = now
            except CoordinatorError:
                continue  # the stream is being re-established: judged on the next wake
            except RelayGone:
                continue  # the next wait notices and goes back to the stream
            if why is not None and not self._stop.is_set():
                if why.reason is Loss.RELEASED:
                    # Released under us (a kick by hand): our lease must not keep the free
                    # place from the sessions waiting for it.
                    self._clear_our_lease(self.hold.place)
                self.hold.lost = why
                if self.on_loss is not None:
                    self.on_loss(why)
                return

    def _come_back(self, deadline: Timeout) -> Lost | None:
        """The stream ended (a coordinator restart): wait for it within the lease, then take
        the place back (the coordinator forgot our lock, kept our lease tag)."""
        assert self.hold is not None
        c, name = self.coordinator, self.hold.place
        gone = Lost(Loss.COORDINATOR_GONE, f"place {name}: the coordinator at {c.address} was "
                                           "not back within the lease")
        # Taking the place back needs this client's own session at the coordinator.
        relayed = self._relay is not None
        if relayed:
            self._leave_janitor(0.0)
        if not c.wait_connected(deadline.remaining):
            return gone
        why = self._take_back(deadline, gone)
        if why is None and relayed:
            self._follow_through_janitor(name)  # or at a later renewal
        return why

    def _take_back(self, deadline: Timeout, gone: Lost) -> Lost | None:
        assert self.hold is not None
        c, name = self.coordinator, self.hold.place
        while not deadline.expired and not self._stop.is_set():
            try:
                place = c.place(name)
                if place.acquired == self.holder:
                    return None
                if place.acquired is not None:
                    return loss(place, self.holder, None)
                if place.tags.get(HOLDER_TAG) != holder_tag(self.holder):
                    return Lost(Loss.RELEASED, f"place {name} was released by someone else "
                                               "while the coordinator restarted")
                with self._lock:
                    if place.reservation is None:
                        c.acquire(name)
                    else:  # allocated to a waiting session: ahead of it, by name
                        self._wait_for_allocation(
                            {"name": name}, RETAKE_PRIO,
                            Timeout(min(float(self.timeout), deadline.remaining)))
                        c.acquire(name)
                    self.hold.token = self._token or self.hold.token
                    self._renew()
                self.progress(f"reservation: took {name} back after the coordinator restarted")
                return None
            except (CoordinatorError, ReservationTimeout):
                c.wait_for_change(c.generation, 0.5)
        return gone

    def _clear_our_lease(self, name: str) -> None:
        with contextlib.suppress(CoordinatorError):
            place = self.place_now(name)
            if place.acquired is None and place.tags.get(HOLDER_TAG) == holder_tag(self.holder):
                self.coordinator.set_tags(name, {LEASE_TAG: "", HOLDER_TAG: ""})

    def why_lost(self) -> Lost | None:
        """One look now (without the watch): why the place is no longer ours to use, if so."""
        if self.hold is None:
            return None
        c = self.coordinator
        v = self._view()
        restarted = bool(self.restarts) or not v.connected or \
            v.connections != self._connections_seen
        try:
            place = self.place_now(self.hold.place)
            if v is self._relay:  # just asked afresh
                restarted = restarted or not v.connected or \
                    v.connections != self._connections_seen
            url = switch_url(place)
            why = loss(place, self.holder, answers(url) if url else None, self._expected)
            if not restarted:  # after a restart, a loss of resources is named for it below
                why = self._settled(why)
        except CoordinatorError as e:
            why = Lost(Loss.COORDINATOR_GONE, f"the coordinator stopped answering: {e}")
        if restarted and (why is None or why.reason in (Loss.RELEASED, Loss.COORDINATOR_GONE,
                                                        Loss.RESOURCES_GONE)):
            # Not released by anyone: the restart forgot the lock (the watch takes it back);
            # resources missing then are the exporters restarting with the coordinator.
            return Lost(Loss.COORDINATOR_RESTARTED,
                        f"place {self.hold.place}: the coordinator at {c.address} restarted "
                        "during the run (labgrid's exporters restart with it, ending the "
                        "consoles)")
        return why

    def _settled(self, why: Lost | None) -> Lost | None:
        """`why`, unless resources that went away turn out to be a release in progress."""
        if why is None or why.reason is not Loss.RESOURCES_GONE or self.hold is None:
            return why
        v = self._view()
        settling = Timeout(SETTLE_S)
        generation: object = v.generation
        while not settling.expired:
            try:
                if self._stop.is_set():
                    if threading.current_thread() is self._watch:
                        return why  # the watch is ending: it records no loss any more
                    # The watch was stopped (the run is ending, why_lost() asks): its relay
                    # answers a look but no longer a wait, so look again a few times.
                    time.sleep(min(LOOK_AGAIN_S, settling.remaining))
                    place = self.place_now(self.hold.place)
                else:
                    generation = v.wait_for_change(generation, settling.remaining)  # type: ignore[arg-type]
                    place = v.place(self.hold.place)
            except (CoordinatorError, RelayGone):
                return why
            if place.acquired != self.holder:
                return loss(place, self.holder, None)
        # Still ours: the resources did go away (an exporter restarted by its service manager
        # comes back with them, but what the session had through them is gone).
        return why

    def place_now(self, name: str) -> Place:
        """The place as it is now: from the janitor's copy when the watch follows it there
        (asked afresh: the last answer may be older than the watch's last wake)."""
        if self._relay is not None:
            try:
                self._relay.refresh()
                return self._relay.place(name)
            except RelayGone:
                self._leave_janitor(5.0)
        return self.coordinator.place(name)

    def stop_watching(self) -> None:
        self._stop.set()
        self.coordinator.poke()
        relay = self._relay
        if relay is not None:
            relay.abort()  # the janitor answers the poll in progress: the release's look
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(1.0 if relay is not None else 15)
            if self._watch.is_alive() and relay is not None:
                relay.abort(hard=True)  # a janitor that did not answer
                self._watch.join(15)

    # --- letting go -------------------------------------------------------------------------

    def release(self) -> None:
        """Idempotent; on every way out, also from a half-done acquire()."""
        self.stop_watching()
        self.coordinator.interest = None
        with self._lock:
            hold, self.hold = self.hold, None
            token, self._token = self._token, None
        c = self.coordinator
        try:
            allocated = None if hold or not token else c.allocated_to(token)
            names = [hold.place] if hold else [allocated.name] if allocated else []
            for name in names:
                with contextlib.suppress(InfrastructureError):
                    # The janitor's copy as it is now, or our own stream's if it is gone.
                    place = self.place_now(name)
                    ours = place.tags.get(HOLDER_TAG) == holder_tag(self.holder)
                    if place.acquired == self.holder or (ours and place.acquired is None):
                        # Also after a kick: our lease must not linger on the free place.
                        c.set_tags(name, {LEASE_TAG: "", HOLDER_TAG: ""})
                    if place.acquired == self.holder:
                        # Only if still ours: the coordinator decides, not a look before.
                        c.release(name, only_from=self.holder)
            if token:
                c.cancel(token)
        except InfrastructureError:
            pass
        finally:
            self._drop_relay(keep=True)
            if self._owned:
                c.close()
