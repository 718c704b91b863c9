"""Reservations, leases, loss and health: the decisions, on places as labgrid's client
session holds them (the same calls against a real coordinator: tests/integration/
test_coordinator.py)."""

from __future__ import annotations

import pytest

from hil.scheduling import health, reservations, status
from hil.scheduling.coordinator import Place, Reservation
from hil.scheduling.janitor import KickReason, LeaseBook
from hil.scheduling.placewatch import RelayGone
from hil.scheduling.reservations import (
    Hold,
    Loss,
    PlaceReservation,
    lease_problem,
    lease_seconds,
    lease_value,
    leased_by_another,
    loss,
    parse_request,
    switch_url,
)

POWER = "hil-lab/virtual-0/NetworkPowerPort/power"
CONSOLE = "hil-lab/virtual-0/NetworkSerialPort/board-console"


def test_a_place_names_its_power_switch_from_the_power_ports_parameters() -> None:
    p = Place("virtual-0", resources={CONSOLE: True, POWER: True},
              params={CONSOLE: {"host": "10.0.0.1", "port": 5000},
                      POWER: {"host": "http://127.0.0.1:44575", "index": 1}})
    assert switch_url(p) == "http://127.0.0.1:44575"
    assert switch_url(Place("x", resources={CONSOLE: True}, params={CONSOLE: {}})) is None


@pytest.mark.parametrize(("words", "error"), [
    ([], "at least one"), (["board"], "tag=value"), (["board=a b"], "tag=value"),
    (["name=$(reboot)"], "tag=value"),
])
def test_bad_reservation_filters_are_named(words, error) -> None:
    with pytest.raises(ValueError, match=error.replace("$", r"\$").replace("(", r"\(")):
        parse_request(words)


def test_filters_are_labgrids_tag_value_words() -> None:
    assert parse_request(["board=virtual", "gic=v2"]) == {"board": "virtual", "gic": "v2"}


def place(**kw) -> Place:
    base = {"name": "p", "tags": {}, "acquired": "me/root",
            "resources": {"e/p/NetworkSerialPort/board-console": True}}
    return Place(**{**base, **kw})


def test_a_lease_is_renewed_at_plus_seconds_and_only_sane_seconds_count() -> None:
    assert lease_value(1000.4, 60) == "1000+60"
    assert lease_seconds("1000+60") == 60
    for bad in ("", None, "100", "soon", "1000+nan", "1000+inf", "1000+0", "1000+-5", "1+5"):
        assert lease_seconds(bad) is None, bad
    assert lease_problem(60) is None
    for bad in (0, -1, 5, float("nan"), float("inf"), 10**6):
        assert "--hil-lease" in str(lease_problem(bad))


def test_the_janitor_counts_a_lease_from_when_it_first_saw_its_value() -> None:
    book = LeaseBook(grace=5)
    held = place(tags={"hil-lease": "1+30"})  # written by a clock decades behind
    assert book.expired(held, 100.0) is None
    assert book.expired(held, 129.0) is None
    renewed = place(tags={"hil-lease": "2+30"})
    assert book.expired(renewed, 129.5) is None  # a new value: counted afresh
    assert book.expired(renewed, 159.0) is None
    kick = book.expired(renewed, 160.0)
    assert kick is not None and kick.reason is KickReason.LEASE_EXPIRED
    assert "not renewed for 30 s" in kick.message
    assert book.next_due(150.0) == pytest.approx(9.5)


def test_a_place_held_without_a_lease_is_freed_after_the_grace_only() -> None:
    book = LeaseBook(grace=5)
    for tags in ({}, {"hil-lease": "garbage"}, {"hil-lease": "1+nan"}):
        book.forget("p")
        bare = place(tags=tags)
        assert book.expired(bare, 0.0) is None
        assert book.expired(bare, 5.0) is None
        kick = book.expired(bare, 5.5)
        assert kick is not None and kick.reason is KickReason.NO_LEASE
        assert "without a valid lease" in kick.message
    assert book.expired(place(acquired=None), 100.0) is None  # free, no lease: nothing to do


def test_lease_book_kicks_a_free_place_whose_holder_never_came_back() -> None:
    book = LeaseBook(grace=5)
    stale = Place("p", tags={"hil-lease": "1000+30", "hil-holder": "h.u+x"}, acquired=None)
    assert book.expired(stale, 0.0) is None
    assert book.expired(stale, 29.0) is None
    kick = book.expired(stale, 31.0)
    assert kick is not None and kick.reason is KickReason.LEASE_EXPIRED
    assert "not held since a coordinator restart" in kick.message


def test_a_free_place_with_another_holders_lease_is_left_for_that_holder() -> None:
    tags = {"hil-lease": "1+30", "hil-holder": "h.u+pytest-1-a"}
    assert leased_by_another(place(acquired=None, tags=tags), "h/u+pytest-2-b")
    assert not leased_by_another(place(acquired=None, tags=tags), "h/u+pytest-1-a")
    assert not leased_by_another(place(acquired=None), "h/u+pytest-2-b")


@pytest.mark.parametrize(("changes", "switch", "says"), [
    ({"acquired": "other/alice"}, True, "was taken away: now held by other/alice"),
    ({"acquired": None}, True, "was released by someone else"),
    ({"resources": {"e/p/NetworkSerialPort/board-console": False}}, True,
     "its resources went away (e/p/NetworkSerialPort/board-console): is the exporter running?"),
    ({"resources": {}}, True, "its resources went away (all)"),
    ({}, False, "its power switch stopped answering"),
])
def test_each_way_of_losing_a_place_is_named(changes, switch, says) -> None:
    why = loss(place(**changes), "me/root", switch)
    assert why is not None and says in str(why)


def test_only_a_loss_the_lab_caused_asks_for_a_health_check() -> None:
    def reason(p: Place, switch: bool) -> Loss:
        why = loss(p, "me/root", switch)
        assert why is not None
        return why.reason

    assert reason(place(acquired="other/alice"), True) is Loss.TAKEN
    assert reason(place(acquired=None), True) is Loss.RELEASED
    assert reason(place(resources={}), True) is Loss.RESOURCES_GONE
    assert reason(place(), False) is Loss.SWITCH_SILENT
    assert [r for r in Loss if not r.lab_fault] == [Loss.TAKEN, Loss.RELEASED]


def test_a_place_of_two_exporters_that_lost_one_is_lost() -> None:
    """The host's exporter (power, TFTP) went away; the lab host's (consoles) is still there:
    its resources are simply no longer listed."""
    expected = {"hil-lab/virtual-0/NetworkPowerPort/power",
                "hil-labhost/virtual-0/NetworkSerialPort/board-console"}
    now = place(resources={"hil-labhost/virtual-0/NetworkSerialPort/board-console": True})
    why = loss(now, "me/root", True, expected)
    assert why is not None and why.reason.lab_fault
    assert "its resources went away (hil-lab/virtual-0/NetworkPowerPort/power)" in str(why)
    assert loss(place(resources=dict.fromkeys(expected, True)), "me/root", True, expected) is None



class _Client:
    """Stands for the Coordinator a reservation was given (nothing of it is called here)."""

    name = "me/root"


class _StoppedRelay:
    """The janitor's watch on a held place after stop_watching(): it answers a look (each
    refresh shows the next of `looks`), not a wait."""

    generation = 0
    connected = True
    connections = 0

    def __init__(self, looks: list[Place]):
        self.looks = looks
        self.seen = 0

    def refresh(self) -> None:
        self.seen = min(self.seen + 1, len(self.looks))

    def place(self, name: str) -> Place:
        return self.looks[max(self.seen - 1, 0)]

    def wait_for_change(self, generation: object, timeout: float) -> object:
        raise RelayGone("the watch was stopped")


def ending_run(looks: list[Place]) -> PlaceReservation:
    """A reservation whose run is ending: its watch stopped, its relay still answering."""
    r = PlaceReservation(_Client(), {"name": "virtual-0"}, progress=lambda _: None)  # type: ignore[arg-type]
    r.hold = Hold("virtual-0", "token")
    r._relay = _StoppedRelay(looks)  # type: ignore[assignment]
    r._stop.set()
    return r


def test_a_kick_in_a_runs_last_moment_is_a_release_not_an_exporter_gone() -> None:
    """labgrid's coordinator takes a kicked place's resources before it clears `acquired`:
    the look that why_lost() takes once the watch stopped settles, as the watch would."""
    going = place(resources={CONSOLE: False})
    r = ending_run([going, going, place(acquired=None)])
    why = r.why_lost()
    assert why is not None and why.reason is Loss.RELEASED, why


def test_resources_that_stay_away_after_the_watch_stopped_are_an_exporter_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reservations, "SETTLE_S", 0.6)
    why = ending_run([place(resources={CONSOLE: False})]).why_lost()
    assert why is not None and why.reason is Loss.RESOURCES_GONE, why

def test_a_place_still_held_with_everything_there_is_not_lost() -> None:
    assert loss(place(), "me/root", True) is None
    assert loss(place(), "me/root", None) is None  # no switch to ask


def test_health_checks_are_due_when_unknown_or_after_the_interval_and_never_while_held() -> None:
    free = {"acquired": None}
    assert health.needs_check(place(**free), now=0, interval=60)
    assert health.needs_check(place(**free, tags={"health": "unknown"}), now=0, interval=60)
    good = place(**free, tags={"health": "good", "health-checked": "1000"})
    assert not health.needs_check(good, now=1059, interval=60)
    assert health.needs_check(good, now=1060, interval=60)
    assert not health.needs_check(place(tags={"health": "unknown"}), now=0, interval=60)


def test_a_check_is_good_only_when_its_run_passed_and_says_why_it_failed() -> None:
    assert health.outcome(0, None) == ("good", "health check passed")
    h, why = health.outcome(2, {"failures": {
        "testcases/test_board.py::test_board_has_vhost_net_and_tun": "InfrastructureError: x\ny"}})
    assert h == "bad" and why == ("health check failed (exit 2): "
                                  "test_board_has_vhost_net_and_tun: InfrastructureError: x")
    assert health.outcome(1, None) == ("bad", "health check failed (exit 1)")


def test_status_shows_health_holder_lease_and_the_queue_in_order() -> None:
    held = Place("virtual-0", tags={"board": "virtual", "gic": "v2", "kvm": "yes",
                                    "health": "good", "hil-lease": "1795637340+60",
                                    "hil-holder": "vm.root+pytest-1-a"},
                 comment="health good: health check passed", acquired="vm/root+pytest-1-a")
    reservations = [
        Reservation("C25532GHBX", "vm/root+pytest-1-a", "acquired", 5.0,
                    {"name": "virtual-0"}, "virtual-0", 1795637000.0),
        Reservation("NW05DIB3ZS", "ci/runner+pytest-9-c", "waiting", 0.0,
                    {"board": "virtual", "health": "good"}, None, 1795637100.0),
    ]
    text = "\n".join(status.lines([held], reservations, now=1795637300))
    assert ("virtual-0      good     vm/root+pytest-1-a                   +100s  "
            "board=virtual gic=v2 kvm=yes") in text
    assert "reservations waiting: 1" in text
    assert "1. NW05DIB3ZS ci/runner+pytest-9-c prio 0 wants board=virtual health=good" in text
    assert "acquired: C25532GHBX vm/root+pytest-1-a -> virtual-0" in text
