"""Reservations, leases, loss and health on the coordinator: the decisions, on recorded output
of labgrid-client (tests/data/labgrid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.lab import health, status
from hil.lab.coordinator import Place, parse_place, parse_reservations, parse_token
from hil.lab.reservations import lab_fault, lease_expired, loss, parse_request, switch_url

DATA = Path(__file__).resolve().parents[1] / "data" / "labgrid"
SHOW = (DATA / "show-acquired.txt").read_text()


def test_a_place_is_read_with_its_tags_holder_comment_and_resources() -> None:
    p = parse_place(SHOW)
    assert p.name == "virtual-0" and p.acquired == "vm/root"
    assert p.tags["health"] == "good" and p.tags["hil-lease"] == "1795637400"
    assert p.comment.startswith("health good: health check passed")
    assert p.resources == {"hil-lab/virtual-0/NetworkSerialPort/board-console": True,
                           "hil-lab/virtual-0/NetworkPowerPort/power": False}
    assert switch_url(p, SHOW) == "http://127.0.0.1:44575"


def test_reservations_are_read_with_state_priority_and_allocation() -> None:
    allocated, waiting = parse_reservations((DATA / "reservations.txt").read_text())
    assert (allocated.token, allocated.state, allocated.prio, allocated.allocation) == \
        ("C25532GHBX", "allocated", 5.0, "p1")
    assert (waiting.owner, waiting.state, waiting.filters, waiting.allocation) == \
        ("ci/runner", "waiting", "board=virtual health=good", None)
    assert parse_token("export LG_TOKEN=NW05DIB3ZS\n") == "NW05DIB3ZS"


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


def test_a_lease_expires_only_on_a_held_place_nobody_renewed() -> None:
    assert lease_expired(place(tags={"hil-lease": "100"}), now=101)
    assert not lease_expired(place(tags={"hil-lease": "100"}), now=99)
    assert not lease_expired(place(tags={}), now=10**10)  # held without hil: not ours to free
    assert not lease_expired(place(tags={"hil-lease": "100"}, acquired=None), now=101)
    assert lease_expired(place(tags={"hil-lease": "soon"}), now=0)


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
    assert why is not None and says in why


def test_only_a_loss_the_lab_caused_asks_for_a_health_check() -> None:
    assert not lab_fault(loss(place(acquired="other/alice"), "me/root", True) or "")
    assert not lab_fault(loss(place(acquired=None), "me/root", True) or "")
    assert lab_fault(loss(place(resources={}), "me/root", True) or "")
    assert lab_fault(loss(place(), "me/root", False) or "")


def test_a_place_of_two_exporters_that_lost_one_is_lost() -> None:
    """The host's exporter (power, TFTP) went away; the lab host's (consoles) is still there:
    its resources are simply no longer listed."""
    expected = {"hil-lab/virtual-0/NetworkPowerPort/power",
                "hil-labhost/virtual-0/NetworkSerialPort/board-console"}
    now = place(resources={"hil-labhost/virtual-0/NetworkSerialPort/board-console": True})
    why = loss(now, "me/root", True, expected)
    assert why is not None and lab_fault(why)
    assert "its resources went away (hil-lab/virtual-0/NetworkPowerPort/power)" in why
    assert loss(place(resources=dict.fromkeys(expected, True)), "me/root", True, expected) is None


class ScriptedCoordinator:
    """labgrid-client show, answering one place after another."""

    def __init__(self, shows: list[Place]) -> None:
        self.shows = shows

    def run(self, *args: str, **kw: object) -> object:
        p = self.shows.pop(0) if len(self.shows) > 1 else self.shows[0]
        lines = [f"Place '{p.name}':", "  tags: ", f"  acquired: {p.acquired}"]
        for path, avail in p.resources.items():
            lines += [f"Acquired resource 'r' ({path}):", "  {'acquired': 'virtual-0',",
                      f"   'avail': {avail},", "   'cls': 'X'}"]
        return type("Done", (), {"stdout": "\n".join(lines) + "\n"})()


def test_a_kick_in_progress_is_named_as_a_kick_not_as_an_exporter_gone(monkeypatch) -> None:
    """labgrid releases a kicked place's resources before it clears `acquired`."""
    from hil.lab import reservations

    monkeypatch.setattr(reservations, "SETTLE_S", 2.0)
    releasing = place(name="virtual-0", acquired="me/root", resources={})
    kicked = place(name="virtual-0", acquired=None, resources={})
    r = reservations.PlaceReservation(ScriptedCoordinator([releasing, releasing, kicked]),  # type: ignore[arg-type]
                                      {"name": "virtual-0"})
    r.holder = "me/root"
    r.hold = reservations.Hold("virtual-0", "TOKEN")
    assert r.why_lost() == "place virtual-0 was released by someone else"
    # An exporter that stays away is named as one once the settling time is over.
    gone = reservations.PlaceReservation(ScriptedCoordinator([releasing]),  # type: ignore[arg-type]
                                         {"name": "virtual-0"})
    gone.holder = "me/root"
    gone.hold = reservations.Hold("virtual-0", "TOKEN")
    assert "its resources went away (all)" in (gone.why_lost() or "")


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
    text = "\n".join(status.lines([parse_place(SHOW)],
                                  parse_reservations((DATA / "reservations.txt").read_text()),
                                  now=1795637300))
    assert "virtual-0      good     vm/root                  +100s  board=virtual gic=v2 kvm=yes" \
        in text
    assert "reservations waiting: 1" in text
    assert "1. NW05DIB3ZS ci/runner prio 0 wants board=virtual health=good" in text
    assert "allocated: C25532GHBX vm/root -> p1" in text


def test_a_free_place_lists_its_matching_resources_too() -> None:
    free = SHOW.replace("Acquired resource", "Matching resource").replace(
        "  acquired: vm/root", "  acquired: None")
    p = parse_place(free)
    assert p.acquired is None and len(p.resources) == 2
    assert switch_url(p, free) == "http://127.0.0.1:44575"
