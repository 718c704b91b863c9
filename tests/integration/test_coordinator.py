"""Holding places on labgrid's own coordinator and exporter, on loopback (no boards): one
session is one holder, no place stays locked without a lease, leases are judged on the
janitor's clock, a coordinator restart does not end a session, and an idle janitor makes no
calls."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.scheduling import reservations
from hil.scheduling.coordinator import Coordinator, CoordinatorError
from hil.scheduling.janitor import Janitor
from hil.scheduling.loopback import SAVE_PERIOD_S, LoopbackLab
from hil.scheduling.reservations import HOLDER_TAG, LEASE_TAG, Loss, Lost, PlaceReservation


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LoopbackLab]:
    with LoopbackLab(tmp_path / "lab", places=2) as lab:
        yield lab


def wait_for(what: str, cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)


def session(lab: LoopbackLab, name: str = "place-0", **kw) -> PlaceReservation:
    losses: list[Lost] = []
    r = PlaceReservation(lab.address, {"name": name}, timeout=kw.pop("timeout", 30),
                         lease=kw.pop("lease", 12), progress=lambda _: None,
                         on_loss=losses.append, **kw)
    r.losses = losses  # type: ignore[attr-defined]
    return r


class CountingCoordinator(Coordinator):
    """Counts the calls that reach the coordinator."""

    calls = 0

    def _run(self, make, what, timeout=30.0):  # type: ignore[no-untyped-def]
        if what not in ("places", "resources"):  # the session's own copy: no call
            type(self).calls += 1
        return super()._run(make, what, timeout)


def test_two_sessions_of_one_user_are_two_holders_served_one_after_the_other(lab) -> None:
    first, second = session(lab), session(lab)
    assert first.holder != second.holder
    assert first.holder.split("+")[0] == second.holder.split("+")[0]  # same host/user
    first.acquire()
    got: list[float] = []
    t = threading.Thread(target=lambda: (second.acquire(), got.append(time.monotonic())))
    t.start()
    time.sleep(2)
    assert not got, "the second session took a place the first holds"
    with Coordinator(lab.address, purpose="look") as c:
        assert c.place("place-0").acquired == first.holder
    released = time.monotonic()
    first.release()
    t.join(20)
    assert got and got[0] >= released
    with Coordinator(lab.address, purpose="look") as c:
        assert c.place("place-0").acquired == second.holder
        assert c.place("place-0").tags[HOLDER_TAG] == second.holder.replace("/", ".")
    second.release()


def test_a_session_notices_a_kick_even_when_a_session_of_the_same_user_takes_the_place(
        lab) -> None:
    victim, check = session(lab), session(lab, purpose="health-place-0", healthy_only=False)
    victim.acquire()
    with Coordinator(lab.address, purpose="admin") as admin:
        # Kicked as the janitor kicks: the lock, then the reservation that still holds it.
        admin.release("place-0", only_from=victim.holder)
        for r in admin.reservations():
            if r.allocation == "place-0":
                admin.cancel(r.token)
    check.acquire()
    wait_for("the victim notices", lambda: victim.losses)
    assert victim.losses[0].reason in (Loss.RELEASED, Loss.TAKEN)
    assert not victim.losses[0].reason.lab_fault
    # The victim's release leaves the check's lock and lease alone.
    victim.release()
    with Coordinator(lab.address, purpose="look") as c:
        p = c.place("place-0")
        assert p.acquired == check.holder
        assert p.tags[HOLDER_TAG] == check.holder.replace("/", ".")
    check.release()


def test_a_place_acquired_without_a_lease_is_kicked_after_the_grace(lab, tmp_path) -> None:
    """A session killed between its lock and its lease, or a lock taken by hand."""
    said: list[str] = []
    janitor = Janitor(Coordinator(lab.address, purpose="janitor", eager=True), Path("unused.yaml"),
                      tmp_path / "health", interval=1e9, grace=2.0, out=said.append)
    janitor_thread = threading.Thread(target=janitor.run, daemon=True)
    janitor_thread.start()
    try:
        hand = Coordinator(lab.address, purpose="by-hand")
        hand.acquire("place-1")
        t0 = time.monotonic()
        with Coordinator(lab.address, purpose="look") as c:
            wait_for("the janitor kicks it", lambda: c.place("place-1").acquired is None, 15)
            kicked_after = time.monotonic() - t0
            assert kicked_after >= 2.0
            assert any("place-1: held by" in line and "without a valid lease" in line
                       for line in said), said
            # And health-checked before anyone gets it (the check of this test's lab has no
            # environment to run, so it ends bad; a real one boots the board).
            wait_for("the check ran", lambda: c.place("place-1").tags.get("health") == "bad")
            assert not any("place-0" in line for line in said)
        hand.close()
    finally:
        janitor.close()


def test_a_lease_is_judged_on_the_janitors_clock_not_the_holders(lab, tmp_path,
                                                                  monkeypatch) -> None:
    # The holder's clock is an hour behind: the lease it writes has long "expired" by any
    # other clock; the janitor counts from when it first saw each value.
    written = reservations.lease_value
    monkeypatch.setattr(reservations, "lease_value", lambda now, s: written(now - 3600, s))
    said: list[str] = []
    janitor = Janitor(Coordinator(lab.address, purpose="janitor", eager=True), Path("unused.yaml"),
                      tmp_path / "health", interval=1e9, grace=2.0, out=said.append)
    threading.Thread(target=janitor.run, daemon=True).start()
    r = session(lab, lease=10)
    try:
        r.acquire()
        with Coordinator(lab.address, purpose="look") as c:
            renewed = float(c.place("place-0").tags[LEASE_TAG].split("+")[0])
            assert renewed < time.time() - 3500  # by its own clock, long expired
        time.sleep(12)  # longer than the lease: renewed twice meanwhile
        assert not r.losses
        with Coordinator(lab.address, purpose="look") as c:
            assert c.place("place-0").acquired == r.holder
        # A holder that stops renewing loses the place one lease after its last renewal.
        r.stop_watching()
        t0 = time.monotonic()
        with Coordinator(lab.address, purpose="look") as c:
            wait_for("the janitor frees it", lambda: c.place("place-0").acquired is None, 20)
        assert time.monotonic() - t0 <= 10 + 1
        assert any("place-0: lease of" in line and "not renewed" in line for line in said), said
    finally:
        r.release()
        janitor.close()


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf"), 5])
def test_a_lease_that_cannot_be_one_is_refused(seconds) -> None:
    with pytest.raises(ValueError, match="--hil-lease"):
        PlaceReservation("127.0.0.1:1", {"name": "x"}, lease=seconds)


def test_a_coordinator_restart_does_not_end_the_session_nor_let_another_take_the_place(
        lab, tmp_path) -> None:
    """The holder follows its place through the janitor (hil.scheduling.placewatch): it takes
    its own stream again to take the place back, and returns to the janitor afterwards."""
    janitor = Janitor(Coordinator(lab.address, purpose="janitor", eager=True), Path("unused.yaml"),
                      tmp_path / "health", interval=1e9, out=lambda _: None,
                      watch_address="127.0.0.1")
    threading.Thread(target=janitor.run, daemon=True).start()
    with Coordinator(lab.address, purpose="look") as c:
        wait_for("the janitor's place watch named", lambda: all(
            p.tags.get("hil-watch") for p in c.places()))
    holder = session(lab, lease=30)
    try:
        holder.acquire()
        assert holder.relayed and holder.coordinator.detached
        # The coordinator keeps its places (and their tags) as last saved.
        time.sleep(SAVE_PERIOD_S + 1)
        waiting = session(lab, purpose="waiting", timeout=60)
        got: list[str] = []
        t = threading.Thread(target=lambda: got.append(waiting.acquire().place), daemon=True)
        t.start()
        time.sleep(1)
        lab.restart_coordinator(down_s=2)
        lab.restart_exporters()  # they end with the coordinator, as a service manager would
        with Coordinator(lab.address, purpose="look", connect_timeout=20) as c:
            wait_for("the holder takes its place back",
                     lambda: c.place("place-0").acquired == holder.holder, 30)
            time.sleep(3)
            assert c.place("place-0").acquired == holder.holder
        assert not holder.losses and not got and holder.restarts >= 1
        # Following it through the janitor again once the janitor's client is back (at a
        # renewal at the latest: every 10 s).
        wait_for("relayed again", lambda: holder.coordinator.detached, 35)
        assert not holder.losses
        holder.release()
        t.join(30)
        assert got == ["place-0"]
        waiting.release()
    finally:
        holder.release()
        janitor.close()


def test_an_idle_janitor_makes_no_calls_to_the_coordinator(lab, tmp_path) -> None:
    CountingCoordinator.calls = 0
    janitor = Janitor(CountingCoordinator(lab.address, purpose="janitor", eager=True), Path("unused.yaml"),
                      tmp_path / "health", interval=1e9, out=lambda _: None)
    janitor.round()
    before = CountingCoordinator.calls
    rounds = janitor.rounds
    threading.Thread(target=janitor.run, daemon=True).start()
    time.sleep(5)
    janitor.close()
    assert CountingCoordinator.calls == before
    # It woke for nothing: no update, nothing due.
    assert janitor.rounds - rounds <= 2


def test_an_interrupted_release_frees_what_a_killed_board_session_held(lab, monkeypatch) -> None:
    from hil import release

    # A board session of release r1 on place-0, killed before it could release anything.
    monkeypatch.setenv("LG_USERNAME", "ci")
    monkeypatch.setenv("LG_USERNAME", release.board_user("r1", "place-0"))
    killed = session(lab)
    killed.acquire()
    killed.stop_watching()
    monkeypatch.setenv("LG_USERNAME", "someone")
    other = session(lab, "place-1")
    other.acquire()
    monkeypatch.setenv("LG_COORDINATOR", lab.address)
    monkeypatch.setenv("LG_USERNAME", "ci")  # the release's own
    done = release.release_leftovers("r1", ["place-0", "place-1"])
    assert done == {"place-0": "its place released, reservation cancelled"}
    with Coordinator(lab.address, purpose="look") as c:
        assert c.place("place-0").acquired is None
        assert LEASE_TAG not in c.place("place-0").tags
        assert c.place("place-1").acquired == other.holder  # another release's: untouched
        assert not [r for r in c.reservations() if "release.r1" in r.owner]
    other.release()


def test_a_rack_of_two_exporter_hosts_serves_every_place_and_a_host_that_goes_takes_only_its_own(
        tmp_path: Path) -> None:
    """Two exporters, each in a network namespace of its own with its own address, as the
    lab hosts of a rack: sessions by tag hold every place of both, and when one host goes
    away its places lose their resources while the other's stay."""
    with LoopbackLab(tmp_path / "rack", places=4, hosts=2) as lab:
        assert re.match(r"10\.231\.7\d\.1:", lab.address)  # not loopback: the hosts' own link
        with Coordinator(lab.address, purpose="test") as c:
            by_host = {p.name: {path.split("/")[0] for path in p.resources} for p in c.places()}
        assert by_host == {"place-0": {"loopback-0"}, "place-1": {"loopback-1"},
                           "place-2": {"loopback-0"}, "place-3": {"loopback-1"}}
        sessions = [PlaceReservation(lab.address, {"board": "loop"}, timeout=30, lease=12,
                                     progress=lambda _: None, purpose=f"rack-{i}")
                    for i in range(4)]
        try:
            held = {s.acquire().place for s in sessions}
        finally:
            for s in sessions:
                s.release()
        assert held == set(lab.names)

        lab.stop_exporter(1)
        with Coordinator(lab.address, purpose="test") as c:
            def gone() -> bool:
                places = {p.name: p for p in c.places()}
                return not any(places[n].resources.values() for n in ("place-1", "place-3"))
            wait_for("host 1's places to lose their resources", gone, timeout=30)
            assert all(p.resources and all(p.resources.values())
                       for p in c.places() if p.name in ("place-0", "place-2"))
        still = session(lab, "place-2")
        try:
            assert still.acquire().place == "place-2"
        finally:
            still.release()


def test_a_holders_client_wakes_for_its_own_place_not_for_every_other_session(lab) -> None:
    """labgrid's stream sends every place's updates to every client; a session's watch wakes
    only for its own place, so M sessions do not wake each other M times over."""
    with Coordinator(lab.address, purpose="watch") as watch, \
            Coordinator(lab.address, purpose="other") as other:
        watch.interest = frozenset({"place-0"})
        before = watch.generation
        other.set_tags("place-1", {"note": "busy elsewhere"})
        wait_for("the update to reach the watching client",
                 lambda: watch.place("place-1").tags.get("note") == "busy elsewhere")
        assert watch.generation == before
        other.set_tags("place-0", {"note": "mine"})
        wait_for("its own place's update to wake it", lambda: watch.generation > before)


def test_a_holders_client_does_not_wake_for_another_places_resources(lab) -> None:
    """Locking a place makes its exporter update each of its resources, and labgrid's stream
    sends those updates to every client: a holder's watch wakes for its own place's resources
    only (it had woken for every resource update of the rack)."""
    with Coordinator(lab.address, purpose="watch") as watch, \
            Coordinator(lab.address, purpose="other") as other:
        watch.interest = frozenset({"place-0"})
        other.acquire("place-1")
        wait_for("the lock to reach the watching client",
                 lambda: watch.place("place-1").acquired == other.name)
        before = watch.generation
        other.release("place-1")  # a place update and, from the exporter, resource updates
        wait_for("the release to reach the watching client",
                 lambda: watch.place("place-1").acquired is None)
        time.sleep(1.0)  # the exporter's resource updates follow the release within ms
        assert watch.generation == before
        other.acquire("place-0")
        wait_for("its own place's update to wake it", lambda: watch.generation > before)


def test_an_unchanged_place_is_read_from_the_clients_copy_without_a_call_and_a_change_is_seen(
        lab) -> None:
    """The janitor and its place watch read a place on every update of the rack; each read
    was a hand-over to the client's event loop. An unchanged place is answered as it was."""
    class Counting(Coordinator):
        reads = 0

        def _run(self, make, what, timeout=30.0):  # type: ignore[no-untyped-def]
            if what == "places":
                type(self).reads += 1
            return super()._run(make, what, timeout)

    with Counting(lab.address, purpose="reader") as reader, \
            Coordinator(lab.address, purpose="other") as other:
        first = reader.place("place-0")
        reads = Counting.reads
        assert reader.place("place-0") is first and Counting.reads == reads
        other.acquire("place-0")
        wait_for("the lock to reach the reading client",
                 lambda: reader.place("place-0").acquired == other.name)
        assert Counting.reads > reads
        other.set_tags("place-0", {"note": "changed"})
        wait_for("the tag", lambda: reader.place("place-0").tags.get("note") == "changed")
        other.release("place-0")
        wait_for("the release", lambda: reader.place("place-0").acquired is None)

    # The janitor's client converts each place as it changes: its reads never wait.
    with Counting(lab.address, purpose="janitor", eager=True) as janitor, \
            Coordinator(lab.address, purpose="other") as other:
        janitor.place("place-1")
        other.acquire("place-1")
        reads = Counting.reads
        wait_for("the lock", lambda: janitor.place("place-1").acquired == other.name)
        other.release("place-1")
        wait_for("the release", lambda: janitor.place("place-1").acquired is None)
        assert Counting.reads == reads


def test_a_holders_client_keeps_only_its_own_place_and_says_so_for_another(lab) -> None:
    """A holder's client skips labgrid's copy-and-diff of every other place's updates (most of
    a holding session's CPU); its own place stays current, and asking for another is an
    error, never a stale answer."""
    with Coordinator(lab.address, purpose="holder") as holder, \
            Coordinator(lab.address, purpose="other") as other:
        holder.follow_only("place-0")
        other.set_tags("place-1", {"note": "elsewhere"})
        other.set_tags("place-0", {"note": "mine"})
        wait_for("its own place's update", lambda: holder.place("place-0").tags.get("note")
                 == "mine")
        assert [p.name for p in holder.places()] == ["place-0"]
        with pytest.raises(CoordinatorError, match="follows only place-0"):
            holder.place("place-1")
        assert other.place("place-1").tags.get("note") == "elsewhere"


def test_a_holders_watch_sleeps_between_updates_when_the_place_has_no_power_switch(lab) -> None:
    """A place without a switch has nothing to ask between its updates and the lease's
    renewal: the watch sleeps (it had woken every 50 ms, most of a holding session's CPU)."""
    r = session(lab, lease=60)
    looks = []
    try:
        r.acquire()
        c = r.coordinator
        real = c.place

        def counted(name):  # type: ignore[no-untyped-def]
            looks.append(time.monotonic())
            return real(name)

        c.place = counted  # type: ignore[method-assign]
        time.sleep(3)
    finally:
        r.release()
    assert len(looks) <= 2, f"the watch looked {len(looks)} times in 3 s with nothing changing"
