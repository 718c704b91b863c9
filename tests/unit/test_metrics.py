"""The janitor's Prometheus metrics: what it counts, what a scrape shows, and what
`hil lab status` reads back from the endpoint."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client import generate_latest

from hil.scheduling import metrics
from hil.scheduling.coordinator import Place, Reservation
from hil.scheduling.janitor import Janitor
from hil.scheduling.reservations import LEASE_TAG

from .test_janitor import ScriptedCoordinator


def res(token: str, state: str, allocation: str | None, created: float) -> Reservation:
    return Reservation(token, "host/user+s", state, 0.0, {"board": "loop"}, allocation, created)


def test_places_are_counted_by_health_and_state_with_every_pair_present() -> None:
    got = metrics.counts([
        Place("a", {"health": "good"}),
        Place("b", {"health": "good"}, acquired="h/u"),
        Place("c", {"health": "bad"}, reservation="T"),
        Place("d", {"health": "what"}),
        Place("e"),
    ])
    assert got[("good", "free")] == 1 and got[("good", "held")] == 1
    assert got[("bad", "reserved")] == 1
    assert got[("unknown", "free")] == 2  # a health the janitor does not know reads unknown
    assert len(got) == 9 and sum(got.values()) == 5


def test_each_grant_is_timed_once_from_the_reservations_creation() -> None:
    calls = []

    def reservations() -> list[Reservation]:
        calls.append(1)
        return [res("T1", "allocated", "a", created=100.0), res("T2", "waiting", None, 90.0)]

    m = metrics.LabMetrics(lambda: [], reservations)
    m.saw([Place("a"), Place("b")], now=101.0)
    assert calls == []  # nothing allocated: no call at all
    m.saw([Place("a", reservation="T1"), Place("b")], now=103.5)
    m.saw([Place("a", reservation="T1"), Place("b")], now=110.0)  # the same grant again
    assert calls == [1]
    figures = metrics.parse(generate_latest(m.registry).decode())
    assert figures.grants == 1 and figures.grant_wait_s == 3.5


def test_a_scrape_shows_places_waiting_checks_and_kicks_as_status_reads_them() -> None:
    places = [Place("a", {"health": "good"}, acquired="h/u"), Place("b", {"health": "bad"})]
    m = metrics.LabMetrics(lambda: places, lambda: [res("W", "waiting", None, 0.0)])
    m.checked("good")
    m.checked("bad")
    m.checked("error")
    m.checked("good")
    m.kicked("lease-expired", lease_expired=True)
    m.kicked("no-lease", lease_expired=False)
    port = m.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        m.close()
    assert 'hil_places{health="good",state="held"} 1.0' in text
    f = metrics.parse(text)
    assert f.places[("bad", "free")] == 1 and f.waiting == 1
    assert f.checks == {"good": 2, "bad": 1, "error": 1}
    assert f.kicks == {"lease-expired": 1, "no-lease": 1} and f.lease_expiries == 1
    lines = metrics.summary(metrics.counts(places), 1) + metrics.janitor_lines(f)
    assert "  good     free 0  reserved 0  held 1" in lines
    assert "  reservations waiting 1" in lines
    assert "  health checks: bad 1, error 1, good 2" in lines
    assert "  kicks: lease-expired 1, no-lease 1; lease expiries 1" in lines


def test_the_janitor_counts_its_kicks_by_reason(tmp_path: Path) -> None:
    held = Place("p1", {LEASE_TAG: "100+30"}, acquired="host/user")
    bare = Place("p2", {}, acquired="host/hand")
    coordinator = ScriptedCoordinator([held, bare], [])
    m = metrics.LabMetrics(coordinator.places, coordinator.reservations)
    janitor = Janitor(coordinator, tmp_path / "env.yaml", tmp_path, grace=5,  # type: ignore[arg-type]
                      out=lambda _: None, metrics=m)
    janitor.round(now=200.0, mono=0.0)
    janitor.round(now=231.0, mono=31.0)
    f = metrics.parse(generate_latest(m.registry).decode())
    assert f.kicks == {"lease-expired": 1, "no-lease": 1} and f.lease_expiries == 1
