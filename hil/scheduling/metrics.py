"""What a lab's janitor serves to Prometheus: its places by health and state, the reservations
waiting, how long reservations waited for their place, health checks by outcome, and the
places it kicked, by why.

labgrid's coordinator has no metrics (its maintainers' PRs #1966-1968 are not merged), and the
third-party labgrid-prometheus-exporter counts places only. The janitor already watches the
coordinator's stream, so it counts what it sees and what it does: serving them costs one
reservations call per scrape and one per grant it sees, nothing per place.

`counts` and `summary` are pure; `hil lab status` prints the same figures from the same
functions, and the janitor's own counters read back from its endpoint.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from hil.scheduling.coordinator import Place, Reservation
from hil.scheduling.reservations import HEALTH_TAG

HEALTHS = ("good", "bad", "unknown")
STATES = ("free", "reserved", "held")
# A grant within a poll of labgrid's client, up to a board's whole health check and beyond.
GRANT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def state_of(place: Place) -> str:
    if place.acquired is not None:
        return "held"
    return "reserved" if place.reservation else "free"


def health_of(place: Place) -> str:
    health = place.tags.get(HEALTH_TAG, "unknown")
    return health if health in HEALTHS else "unknown"


def counts(places: Iterable[Place]) -> dict[tuple[str, str], int]:
    """(health, state) -> places, every pair present (0 included: a series that vanishes
    reads as "no data", not as none)."""
    out = {(h, s): 0 for h in HEALTHS for s in STATES}
    for p in places:
        out[(health_of(p), state_of(p))] += 1
    return out


def waiting(reservations: Iterable[Reservation]) -> int:
    return sum(1 for r in reservations if r.state == "waiting")


class Grants:
    """Which allocations the janitor has seen, so that each grant is timed once."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}  # place -> token it is allocated to

    def new(self, places: Iterable[Place]) -> list[str]:
        """Tokens newly allocated to a place since the last look."""
        fresh = []
        for p in places:
            if p.reservation and self.seen.get(p.name) != p.reservation:
                fresh.append(p.reservation)
            if p.reservation:
                self.seen[p.name] = p.reservation
            else:
                self.seen.pop(p.name, None)
        return fresh


class LabMetrics:
    """The janitor's metrics, in a registry of their own (nothing of the process's)."""

    def __init__(self, places: Callable[[], list[Place]],
                 reservations: Callable[[], list[Reservation]]):
        self.registry = CollectorRegistry()
        self._places = places
        self._reservations = reservations
        self.grant_wait = Histogram(
            "hil_reservation_grant_wait_seconds",
            "From a reservation's creation to its place being allocated to it, as the janitor "
            "saw the allocation", buckets=GRANT_BUCKETS, registry=self.registry)
        self.health_checks = Counter("hil_health_checks", "Health checks by outcome",
                                     ["outcome"], registry=self.registry)
        self.kicks = Counter("hil_kicks", "Places the janitor freed, by why", ["reason"],
                             registry=self.registry)
        self.lease_expiries = Counter(
            "hil_lease_expiries", "Leases that ran out without renewal (a subset of the kicks)",
            registry=self.registry)
        for outcome in (*HEALTHS[:2], "error"):
            self.health_checks.labels(outcome)
        self._grants = Grants()
        self._lock = threading.Lock()
        self.registry.register(_PlacesCollector(self))
        self._server: Any = None

    # What the janitor tells it.
    def saw(self, places: list[Place], now: float) -> None:
        """A round's places: time the grants that are new (one reservations call if any)."""
        with self._lock:
            fresh = self._grants.new(places)
        if not fresh:
            return
        created = {r.token: r.created for r in self._reservations()}
        for token in fresh:
            if token in created:
                self.grant_wait.observe(max(0.0, now - created[token]))

    def checked(self, outcome: str) -> None:
        self.health_checks.labels(outcome if outcome in ("good", "bad") else "error").inc()

    def kicked(self, reason: str, lease_expired: bool) -> None:
        self.kicks.labels(reason).inc()
        if lease_expired:
            self.lease_expiries.inc()

    # Serving.
    def serve(self, address: str, port: int) -> int:
        """Serve /metrics on address:port (0: any free port); the port."""
        self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _PlacesCollector:
    """Gauges read at scrape time from the coordinator's stream (and one reservations call)."""

    def __init__(self, metrics: LabMetrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        places = GaugeMetricFamily("hil_places", "Places by health and state",
                                   labels=["health", "state"])
        for (health, state), n in counts(self.metrics._places()).items():
            places.add_metric([health, state], n)
        yield places
        yield GaugeMetricFamily("hil_reservations_waiting", "Reservations waiting for a place",
                                value=waiting(self.metrics._reservations()))


# Reading them back, for `hil lab status`.


@dataclass(frozen=True)
class Figures:
    places: dict[tuple[str, str], int]
    waiting: int
    checks: dict[str, int]
    kicks: dict[str, int]
    lease_expiries: int
    grants: int
    grant_wait_s: float  # their sum


def parse(text: str) -> Figures:
    """The janitor's exposition text -> its figures."""
    places: dict[tuple[str, str], int] = {}
    checks: dict[str, int] = {}
    kicks: dict[str, int] = {}
    single: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "hil_places":
                places[(s.labels["health"], s.labels["state"])] = int(s.value)
            elif s.name == "hil_health_checks_total":
                checks[s.labels["outcome"]] = int(s.value)
            elif s.name == "hil_kicks_total":
                kicks[s.labels["reason"]] = int(s.value)
            elif s.name in ("hil_reservations_waiting", "hil_lease_expiries_total",
                            "hil_reservation_grant_wait_seconds_count",
                            "hil_reservation_grant_wait_seconds_sum"):
                single[s.name] = s.value
    return Figures(places, int(single.get("hil_reservations_waiting", 0)), checks, kicks,
                   int(single.get("hil_lease_expiries_total", 0)),
                   int(single.get("hil_reservation_grant_wait_seconds_count", 0)),
                   single.get("hil_reservation_grant_wait_seconds_sum", 0.0))


def fetch(url: str, timeout: float = 5.0) -> Figures:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return parse(r.read().decode())


def summary(places: Mapping[tuple[str, str], int], waiting_now: int) -> list[str]:
    """Places by health and state, as one line each: what `hil lab status` and Prometheus
    both show."""
    out = []
    for health in HEALTHS:
        row = {s: places.get((health, s), 0) for s in STATES}
        if any(row.values()):
            out.append(f"  {health:<8} " + "  ".join(f"{s} {n}" for s, n in row.items()))
    out.append(f"  reservations waiting {waiting_now}")
    return out


def janitor_lines(f: Figures) -> list[str]:
    mean = f" (mean {f.grant_wait_s / f.grants:.1f} s)" if f.grants else ""
    return ["  health checks: " + (", ".join(f"{k} {v}" for k, v in sorted(f.checks.items()))
                                    or "none"),
            "  kicks: " + (", ".join(f"{k} {v}" for k, v in sorted(f.kicks.items())) or "none")
            + f"; lease expiries {f.lease_expiries}",
            f"  grants seen: {f.grants}{mean}"]
