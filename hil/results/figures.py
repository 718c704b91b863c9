"""The figures a report shows, taken from a run's measurements: the fallback matrix, per-CPU
interrupts of each queue line, throughput samples per wiring, irqfd's effect, thresholds.

Pure functions over hil.results.measurements rows; the names they read are those the
testcases record (testcases/*.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hil.measure import throughput, virtio
from hil.results.junit import Case
from hil.results.measurements import Measurement, first, number

SAMPLES = "iperf3.received_bps"  # one per iteration; the throughput case adds its `config`


@dataclass(frozen=True)
class MatrixRow:
    guest: str
    vmm: str
    lines: int
    pairs: int
    expected: str | None  # None: a cell the document does not list
    seen: str | None  # None: not measured (not run, or failed before)
    case: str | None  # the case's outcome: passed, failed, skipped; None: no case

    @property
    def status(self) -> str:
        if self.expected is None:
            return "not in the matrix"
        if self.seen is None:
            return "not measured"
        return "as documented" if self.seen == self.expected else "differs"


def _cell_case(cases: dict[str, Case], cell_id: str) -> str | None:
    for nodeid, c in cases.items():
        if nodeid.endswith(f"[{cell_id}]") and "combination" in nodeid:
            return c.outcome
    return None


def fallback_matrix(rows: Iterable[Measurement], cases: dict[str, Case],
                    cells: Iterable[virtio.MatrixCell] = virtio.FALLBACK_MATRIX) -> list[MatrixRow]:
    """Every documented cell with the mode seen, then any measured cell the document lacks."""
    seen: dict[tuple[str, str, int, int], str] = {}
    for r in rows:
        if r.name == "fallback.mode":
            key = (str(r.ctx("guest")), str(r.ctx("vmm")), int(r.ctx("lines") or 0),
                   int(r.ctx("pairs") or 0))
            seen[key] = str(r.value)
    out = []
    known = set()
    for cell in cells:
        key = (cell.guest, cell.vmm, cell.lines, cell.pairs)
        known.add(key)
        out.append(MatrixRow(cell.guest, cell.vmm, cell.lines, cell.pairs, cell.mode,
                             seen.get(key), _cell_case(cases, cell.id)))
    for key, mode in sorted(seen.items()):
        if key not in known:
            out.append(MatrixRow(*key, expected=None, seen=mode, case=None))
    return out


@dataclass(frozen=True)
class PerCpu:
    """Interrupts each CPU took on one queue line during a run."""

    line: str  # input.0, output.1, ...
    counts: tuple[int, ...]
    bound_to: int | None  # the CPU the case bound it to, if it did


_PER_CPU = re.compile(r"^affinity\.(?:(?P<mq>mq)\.)?(?P<line>.+)\.per_cpu$")


def affinity(rows: Iterable[Measurement]) -> dict[str, list[PerCpu]]:
    """Per case (`affinity`: each line bound to a CPU; `multiqueue`: lines spread by the
    driver) the per-CPU interrupt counts of each queue line."""
    out: dict[str, list[PerCpu]] = {}
    for r in rows:
        m = _PER_CPU.match(r.name)
        if not m or not isinstance(r.value, list):
            continue
        group = "multiqueue" if m.group("mq") else "affinity"
        cpu = r.ctx("cpu")
        out.setdefault(group, []).append(PerCpu(m.group("line"), tuple(int(v) for v in r.value),
                                                int(cpu) if cpu is not None else None))
    return out


def throughput_samples(rows: Iterable[Measurement]) -> dict[str, list[float]]:
    """Configuration -> the per-iteration throughput samples (bit/s), in run order."""
    out: dict[str, list[float]] = {}
    for r in rows:
        v = number(r.value)
        if r.name == SAMPLES and r.ctx("config") and v is not None:
            out.setdefault(str(r.ctx("config")), []).append(v)
    return {k: out[k] for k in sorted(out, key=_config_order)}


def clock(rows: Iterable[Measurement]) -> str:
    """The clock a run's throughput samples were taken on: `icount` on a cost-model board
    (hil/measure/costmodel.py), else `wall` (runs recorded before figures said theirs included)."""
    found = {str(r.ctx("clock") or "wall") for r in rows if r.name == SAMPLES}
    return "+".join(sorted(found)) or "wall"


def _config_order(name: str) -> tuple[int, str]:
    order = list(throughput.CONFIGS)
    return (order.index(name) if name in order else len(order), name)


@dataclass(frozen=True)
class IrqPath:
    """Per queue interrupt the guest took: injections from userspace and MMIO exits."""

    wiring: str  # single, multi
    injections_per_interrupt: float | None
    exits_per_interrupt: float | None
    interrupts: int | None


def irqfd(rows: list[Measurement]) -> list[IrqPath]:
    out = []
    single_inj = first(rows, "irqfd.single.userspace_injections")
    single_irq = first(rows, "irqfd.single.guest_interrupts")
    single_exits = first(rows, "irqfd.single.mmio_exits_per_interrupt")
    if single_irq is not None:
        n = number(single_irq.value) or 0
        out.append(IrqPath(
            "single line",
            _per(single_inj.value if single_inj else None, n),
            number(single_exits.value) if single_exits else None, int(n)))
    multi_inj = first(rows, "irqfd.per-vq.userspace_injections")
    multi_irq = first(rows, "irqfd.per-vq.queue_interrupts")
    multi_exits = first(rows, "irqfd.per-vq.status_and_ack_exits")
    if multi_irq is not None:
        n = number(multi_irq.value) or 0
        out.append(IrqPath("line per queue", _per(multi_inj.value if multi_inj else None, n),
                           _per(multi_exits.value if multi_exits else None, n), int(n)))
    return out


def _per(value: Any, n: float) -> float | None:
    v = number(value)
    return None if v is None or not n else v / n


@dataclass(frozen=True)
class ThresholdRow:
    key: str
    limit: Any
    measured: str  # the figure compared, readable
    met: bool


@dataclass(frozen=True)
class Gate:
    verdict: str  # met, violated, not gated, not measured
    rows: tuple[ThresholdRow, ...]
    violations: tuple[str, ...]
    recorded: str | None  # throughput.gate as the case recorded it


def thresholds(rows: list[Measurement], options: dict[str, Any]) -> Gate:
    """The board's declared thresholds against this run's samples (hil/measure/throughput.py rules)."""
    declared = options.get("thresholds") or {}
    recorded = first(rows, "throughput.gate")
    summaries = throughput.summarize(throughput_samples(rows))
    if not isinstance(declared, dict):
        declared = {}
    if declared and not summaries:
        return Gate("not measured", (), ("no throughput samples were recorded",),
                    str(recorded.value) if recorded else None)
    # The thresholds on transactions/s and cost counters are checked by the wiring benchmark
    # (`hil bench --wiring`, bench.gate), from figures this page does not plot.
    declared = throughput.of_metrics(declared, [throughput.THROUGHPUT])
    result = throughput.check_thresholds(summaries, declared)
    out = []
    for key, limit in declared.items():
        names = throughput.named_configs(str(key)) or ()
        figure = "not measured"
        if names and all(n in summaries for n in names):
            if len(names) == 1:
                figure = f"{summaries[names[0]].median / 1e9:.3f} Gbit/s"
            elif summaries[names[1]].median:
                figure = f"{summaries[names[0]].median / summaries[names[1]].median:.2f}"
        met = not throughput.check_thresholds(summaries, {str(key): limit}).violations
        out.append(ThresholdRow(str(key), limit, figure, met))
    return Gate(result.verdict, tuple(out), result.violations,
                str(recorded.value) if recorded else None)
