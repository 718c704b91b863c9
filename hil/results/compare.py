"""A run against a baseline (an earlier release's run): tests that regressed or were fixed,
modes that changed, counters that moved, and throughput changes by hil.results.stats' rule.

Pure: two boards' cases and measurements in, the differences out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from hil.results import figures, stats
from hil.results.junit import Case
from hil.results.measurements import Measurement, number

# Counts over a fixed-length run scale with throughput, which emulation alone moves by this
# much; a path that opens or closes (zero <-> non-zero) always counts.
COUNTER_TOLERANCE = 0.25
COUNTER_UNITS = ("count", "exits")
COUNTER_RULE = (f"a counter moved when it went from zero to non-zero or back, or changed by more "
                f"than {COUNTER_TOLERANCE:.0%} (counts over a fixed-length run follow the "
                "throughput, which emulation alone moves by that much)")


@dataclass(frozen=True)
class TestChange:
    nodeid: str
    old: str  # passed, failed (product/infrastructure), skipped, absent
    new: str


@dataclass(frozen=True)
class ValueChange:
    what: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ThroughputChange:
    config: str
    old_median: float | None
    new_median: float | None
    change: stats.Change


@dataclass
class Comparison:
    regressed: list[TestChange] = field(default_factory=list)
    fixed: list[TestChange] = field(default_factory=list)
    other: list[TestChange] = field(default_factory=list)  # skips, new or vanished cases
    modes: list[ValueChange] = field(default_factory=list)
    counters: list[ValueChange] = field(default_factory=list)
    throughput: list[ThroughputChange] = field(default_factory=list)

    @property
    def throughput_regressions(self) -> list[ThroughputChange]:
        return [t for t in self.throughput if t.change.verdict == "regressed"]


def _state(case: Case | None) -> str:
    if case is None:
        return "absent"
    if case.outcome == "failed":
        return f"failed ({case.kind})"
    return case.outcome


def tests(old: dict[str, Case], new: dict[str, Case]) -> tuple[list[TestChange], ...]:
    regressed, fixed, other = [], [], []
    for nodeid in sorted(set(old) | set(new)):
        o, n = old.get(nodeid), new.get(nodeid)
        so, sn = _state(o), _state(n)
        if so == sn:
            continue
        change = TestChange(nodeid, so, sn)
        # A regression is the product's: a case that passed now fails as a product failure.
        if so == "passed" and n is not None and n.outcome == "failed" and n.kind == "product":
            regressed.append(change)
        elif o is not None and o.outcome == "failed" and sn == "passed":
            fixed.append(change)
        else:
            other.append(change)
    return regressed, fixed, other


def _label(r: Measurement) -> str:
    ctx = ", ".join(f"{k}={v}" for k, v in r.context if k not in ("board", "intid"))
    return f"{r.name} [{ctx}]" if ctx else r.name


def modes(old: list[Measurement], new: list[Measurement]) -> list[ValueChange]:
    """Interrupt modes: each `*.mode` measurement, and the irq_mode each throughput
    configuration ran in."""
    def collect(rows: list[Measurement]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in rows:
            if r.name.endswith(".mode") or r.name == "mode":
                out.setdefault(_label(r), set()).add(str(r.value))
            elif r.name == "throughput.wiring" and isinstance(r.value, dict):
                out.setdefault(f"throughput {r.ctx('config')} irq_mode", set()).add(
                    str(r.value.get("irq_mode")))
        return out
    a, b = collect(old), collect(new)
    return [ValueChange(k, ", ".join(sorted(a[k])), ", ".join(sorted(b[k])))
            for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def counter_moved(old: float, new: float, tolerance: float = COUNTER_TOLERANCE) -> bool:
    if (old == 0) != (new == 0):
        return True
    return bool(old) and abs(new - old) / abs(old) > tolerance


def counters(old: list[Measurement], new: list[Measurement]) -> list[ValueChange]:
    def collect(rows: list[Measurement]) -> dict[str, float]:
        out = {}
        for r in rows:
            v = number(r.value)
            if v is not None and r.unit in COUNTER_UNITS:
                out[_label(r)] = v
        return out
    a, b = collect(old), collect(new)
    return [ValueChange(k, a[k], b[k]) for k in sorted(set(a) & set(b))
            if counter_moved(a[k], b[k])]


def throughput(old: list[Measurement], new: list[Measurement]) -> list[ThroughputChange]:
    a, b = figures.throughput_samples(old), figures.throughput_samples(new)
    board_noise = stats.noise([*a.values(), *b.values()])
    # Instructions counted by a cost-model board and seconds of a wall clock are different
    # units: such runs are shown side by side, never compared.
    clocks = figures.clock(old), figures.clock(new)
    out = []
    for config in [c for c in b if c in a] + [c for c in a if c not in b]:
        xs, ys = a.get(config, []), b.get(config, [])
        change = (stats.decide(xs, ys, board_noise) if clocks[0] == clocks[1] else
                  stats.Change("not decided", reason=f"the baseline was measured on the "
                                                     f"{clocks[0]} clock, this run on {clocks[1]}"))
        out.append(ThroughputChange(
            config, statistics.median(xs) if xs else None,
            statistics.median(ys) if ys else None, change))
    return out


def compare(old_cases: dict[str, Case], old_rows: list[Measurement],
            new_cases: dict[str, Case], new_rows: list[Measurement]) -> Comparison:
    regressed, fixed, other = tests(old_cases, new_cases)
    return Comparison(regressed, fixed, other, modes(old_rows, new_rows),
                      counters(old_rows, new_rows), throughput(old_rows, new_rows))
