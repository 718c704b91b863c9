"""The janitor's round, on a scripted coordinator: what it does to a place whose session
vanished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.scheduling.coordinator import Place, Reservation
from hil.scheduling.health import CHECKED_TAG
from hil.scheduling.janitor import EXPORTERS_BACK_S, HEALTH_WAKE_S, Janitor
from hil.scheduling.reservations import HOLDER_TAG, LEASE_TAG


class ScriptedCoordinator:
    address = "127.0.0.1:1"

    def __init__(self, places: list[Place], reservations: list[Reservation]):
        self._places = places
        self._reservations = reservations
        self.calls: list[tuple[Any, ...]] = []

        self.changed: set[str] = set()  # what the script updated since the janitor looked
        self.reads = 0  # places read: all of them, or one

    def take_changes(self) -> tuple[bool, frozenset[str]]:
        changed, self.changed = frozenset(self.changed), set()
        return False, changed

    def places(self) -> list[Place]:
        self.reads += len(self._places)
        return self._places

    def place(self, name: str) -> Place:
        self.reads += 1
        return next(p for p in self._places if p.name == name)

    def reservations(self) -> list[Reservation]:
        return self._reservations

    def set_tags(self, place: str, tags: dict[str, str]) -> None:
        self.calls.append(("set_tags", place, tags))

    def set_comment(self, place: str, comment: str) -> None:
        self.calls.append(("set_comment", place, comment))

    def release(self, place: str, only_from: str | None = None) -> None:
        self.calls.append(("release", place, only_from))

    def cancel(self, token: str) -> None:
        self.calls.append(("cancel", token))


def reservation(token: str, state: str, allocation: str | None) -> Reservation:
    return Reservation(token, "host/user", state, 0.0, {"name": "p1"}, allocation, 0.0)


def test_a_lease_nobody_renewed_is_kicked_and_its_reservation_cancelled(tmp_path: Path) -> None:
    # The vanished session's reservation would keep p1 allocated for another minute, holding
    # back the health check and every waiting session; one waiting for p2 is left alone.
    held = Place("p1", {LEASE_TAG: "100+30", HOLDER_TAG: "ci/1234", "health": "good"},
                 acquired="host/user")
    coordinator = ScriptedCoordinator(
        [held, Place("p2", {"health": "good", LEASE_TAG: "100+30"}, acquired="host/other")],
        [reservation("DEAD", "acquired", "p1"), reservation("ALIVE", "waiting", None),
         reservation("OTHER", "acquired", "p2")])
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path, out=lambda _: None)  # type: ignore[arg-type]
    janitor.round(now=200.0, mono=0.0)  # first seen
    assert coordinator.calls == []
    # p2's holder renews; p1's does not.
    coordinator._places[1] = Place("p2", {"health": "good", LEASE_TAG: "110+30"},
                                   acquired="host/other")
    janitor.round(now=231.0, mono=31.0)
    calls = coordinator.calls
    kick = ("release", "p1", "host/user")
    assert kick in calls
    assert not [c for c in calls if c[1] == "p2"]
    assert [c for c in calls if c[0] == "cancel"] == [("cancel", "DEAD")]
    assert calls.index(kick) < calls.index(("cancel", "DEAD"))
    assert calls.index(("set_tags", "p1", {"health": "unknown"})) < calls.index(kick), \
        "marked unknown before anyone can take it"


def test_a_lease_still_running_is_left_alone(tmp_path: Path) -> None:
    held = Place("p1", {LEASE_TAG: "300+60", HOLDER_TAG: "ci/1234", "health": "good"},
                 acquired="host/user")
    coordinator = ScriptedCoordinator([held], [reservation("LIVE", "acquired", "p1")])
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path,  # type: ignore[arg-type]
                      out=lambda _: None)
    janitor.round(now=200.0, mono=0.0)
    janitor.round(now=259.0, mono=59.0)
    assert coordinator.calls == []


def test_after_a_coordinator_restart_health_checks_wait_for_the_exporters(tmp_path: Path) -> None:
    started: list[str] = []
    coordinator = ScriptedCoordinator([Place("p1", {"health": "unknown"})], [])
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path,  # type: ignore[arg-type]
                      out=lambda _: None, check=lambda _a, place, _e, _r: started.append(place))
    janitor.reconnected(mono=100.0)
    janitor.round(now=1000.0, mono=100.0 + EXPORTERS_BACK_S - 1)
    assert started == []
    janitor.round(now=1000.0, mono=100.0 + EXPORTERS_BACK_S)
    for t in janitor._checking.values():
        t.join(5)
    assert started == ["p1"]


def test_a_lab_of_many_unchecked_places_is_checked_a_few_at_a_time(tmp_path: Path) -> None:
    import threading

    release = threading.Event()
    started: list[str] = []
    coordinator = ScriptedCoordinator(
        [Place(f"p{i}", {"health": "unknown"}) for i in range(10)], [])

    def check(_a: str, place: str, _e: Path, _r: Path) -> None:
        started.append(place)
        release.wait(5)

    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path,  # type: ignore[arg-type]
                      out=lambda _: None, check=check, max_checks=3)
    janitor.round(now=1000.0, mono=0.0)
    janitor.round(now=1001.0, mono=1.0)  # still three running: none more
    assert sorted(janitor._checking) == ["p0", "p1", "p2"]
    release.set()
    for t in list(janitor._checking.values()):
        t.join(5)
    janitor.round(now=1002.0, mono=2.0)  # the next three (the first are still unknown here)
    assert len(janitor._checking) == 3
    for t in list(janitor._checking.values()):
        t.join(5)


def test_a_round_reads_only_the_places_that_changed_and_every_place_once_a_minute(
        tmp_path: Path) -> None:
    # In a rack every lock and release wakes the janitor: reading all N places each time was
    # most of its CPU. Health checks fall due by the clock, so it still reads all of them
    # every HEALTH_WAKE_S.
    places = [Place(f"p{i}", {"health": "good", CHECKED_TAG: "1000"}) for i in range(50)]
    coordinator = ScriptedCoordinator(places, [])
    started: list[str] = []
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path,  # type: ignore[arg-type]
                      out=lambda _: None, check=lambda _a, place, _e, _r: started.append(place),
                      interval=3600.0)
    janitor.round(now=1000.0, mono=0.0)
    assert coordinator.reads == 50
    janitor.round(now=1001.0, mono=1.0)  # nothing changed, nothing due
    assert coordinator.reads == 50
    # A session's place, kicked by hand and left unchecked, is checked from its update alone.
    places[7] = Place("p7", {"health": "unknown"})
    coordinator.changed.add("p7")
    janitor.round(now=1002.0, mono=2.0)
    for t in list(janitor._checking.values()):
        t.join(5)
    assert started == ["p7"]
    assert coordinator.reads == 52  # p7 to look at it, and for the check's outcome
    places[7] = Place("p7", {"health": "good", CHECKED_TAG: "1002"})  # what the check wrote
    janitor.round(now=1000.0 + HEALTH_WAKE_S, mono=HEALTH_WAKE_S)
    assert coordinator.reads == 102 and janitor.scans == 2


def test_a_place_whose_exporter_is_away_is_checked_once_its_resources_are_back(
        tmp_path: Path) -> None:
    started: list[str] = []
    whole = {"local/g/NetworkPowerPort/power": True, "labhost/g/NetworkSerialPort/console": True}
    coordinator = ScriptedCoordinator(
        [Place("p1", {"health": "good", CHECKED_TAG: "1000"}, resources=whole)], [])
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path,  # type: ignore[arg-type]
                      out=lambda _: None, check=lambda _a, place, _e, _r: started.append(place))
    janitor.round(now=1001.0, mono=1.0)
    # A session lost it to a killed exporter (the other lab host's console is still there)
    # and asked for a check; the exporter restarts.
    coordinator._places[0] = Place("p1", {"health": "unknown"},
                                   resources={"labhost/g/NetworkSerialPort/console": True})
    coordinator.changed.add("p1")
    janitor.round(now=1002.0, mono=2.0)
    assert started == [] and janitor._checks_waiting
    coordinator._places[0] = Place("p1", {"health": "unknown"}, resources=whole)
    janitor.round(now=1003.0, mono=3.0)  # it looks at every place while one waits
    for t in janitor._checking.values():
        t.join(5)
    assert started == ["p1"]
    # An exporter that does not come back: checked after EXPORTERS_BACK_S (and marked bad).
    coordinator._places[:] = [Place("p2", {"health": "good", CHECKED_TAG: "1000"},
                                    resources=whole)]
    coordinator.changed.add("p2")
    janitor.round(now=1004.0, mono=4.0)
    coordinator._places[:] = [Place("p2", {"health": "unknown"})]
    coordinator.changed.add("p2")
    janitor.round(now=1005.0, mono=5.0)
    assert started == ["p1"]
    janitor.round(now=1006.0, mono=5.0 + EXPORTERS_BACK_S)
    for t in janitor._checking.values():
        t.join(5)
    assert started == ["p1", "p2"]


def test_a_place_whose_adapter_is_unplugged_waits_for_it_before_its_check(tmp_path: Path) -> None:
    """The exporter still publishes a console whose USB serial adapter is gone, as not
    available: the place is checked once it is available again, not marked bad meanwhile."""
    started: list[str] = []
    power, console = "local/g/NetworkPowerPort/power", "labhost/g/NetworkSerialPort/console"
    coordinator = ScriptedCoordinator(
        [Place("p1", {"health": "good", CHECKED_TAG: "1000"},
               resources={power: True, console: True})], [])
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path,  # type: ignore[arg-type]
                      out=lambda _: None, check=lambda _a, place, _e, _r: started.append(place))
    janitor.round(now=1001.0, mono=1.0)
    coordinator._places[0] = Place("p1", {"health": "unknown"},
                                   resources={power: True, console: False})
    coordinator.changed.add("p1")
    janitor.round(now=1002.0, mono=2.0)
    assert started == [] and janitor._checks_waiting
    coordinator._places[0] = Place("p1", {"health": "unknown"},
                                   resources={power: True, console: True})
    janitor.round(now=1003.0, mono=3.0)
    for t in janitor._checking.values():
        t.join(5)
    assert started == ["p1"]
