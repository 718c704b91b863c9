"""The wiring benchmark's table: each interrupt wiring's figures with their spread and number
of runs, ratios taken side by side in one run, and the agreement of separate sessions.

Pure: reads the rows of a run's measurements.jsonl (as testcases/test_wiring_cost.py records
them) and returns text.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hil.measure import throughput

UDP_RATE = "udp_received_per_s"
UDP_STACK = "udp_stack_per_s"
BLK_IOPS = "blk_iops"
# Per-iteration figure -> its metric; the tables' columns in this order. Request/response
# (sockperf) is what `cost.*` counts; `udp.*` and `blk.*` count the small-datagram and the
# random-read runs.
SAMPLES = {
    "iperf3.received_bps": throughput.THROUGHPUT,
    "sockperf.transactions_per_s": throughput.TRANSACTIONS,
    "cost.exits_per_interrupt": "exits_per_interrupt",
    "cost.injections_per_interrupt": "injections_per_interrupt",
    "cost.status_ack_exits_per_interrupt": "status_ack_exits_per_interrupt",
    "cost.exits_per_transaction": "exits_per_transaction",
    "cost.vmm_us_per_transaction": "vmm_us_per_transaction",
    "udp.received_per_s": UDP_RATE,
    "udp.loss": "udp_loss",
    "udp.stack_per_s": UDP_STACK,
    "udp.exits_per_interrupt": "udp_exits_per_interrupt",
    "udp.injections_per_interrupt": "udp_injections_per_interrupt",
    "blk.iops": BLK_IOPS,
    "blk.exits_per_interrupt": "blk_exits_per_interrupt",
    "blk.injections_per_interrupt": "blk_injections_per_interrupt",
}
COLUMNS = {
    throughput.THROUGHPUT: ("Gbit/s", 1e-9, 3),
    throughput.TRANSACTIONS: ("transactions/s", 1.0, 0),
    "exits_per_interrupt": ("exits/irq", 1.0, 2),
    "injections_per_interrupt": ("injections/irq", 1.0, 2),
    "status_ack_exits_per_interrupt": ("status+ack/irq", 1.0, 2),
    "exits_per_transaction": ("exits/transaction", 1.0, 2),
    "vmm_us_per_transaction": ("VMM us/transaction", 1.0, 1),
    UDP_RATE: ("UDP 64 B kpackets/s", 1e-3, 1),
    "udp_loss": ("UDP lost %", 100.0, 1),
    UDP_STACK: ("UDP taken in kpackets/s", 1e-3, 1),
    "udp_exits_per_interrupt": ("UDP exits/irq", 1.0, 2),
    "udp_injections_per_interrupt": ("UDP injections/irq", 1.0, 2),
    BLK_IOPS: ("4K read IOPS", 1.0, 0),
    "blk_exits_per_interrupt": ("blk exits/irq", 1.0, 2),
    "blk_injections_per_interrupt": ("blk injections/irq", 1.0, 2),
}
# The request/response table (one queue pair's costs, as measured first) and the several-queue
# table (small datagrams and random reads, a flow and a reader per vCPU).
RR_COLUMNS = tuple(COLUMNS)[:7]
MQ_COLUMNS = tuple(COLUMNS)[7:]
# The figures whose ratios the benchmark answers with (higher is better).
RATES = (throughput.THROUGHPUT, throughput.TRANSACTIONS, UDP_RATE, UDP_STACK, BLK_IOPS)
# Ratios the issue asks about: (numerator, denominator), each side by side in one run.
PAIRS = (
    ("vhost-net", "virtio-net"),
    ("vhost-net-irqfd", "vhost-net"),
    ("vhost-net-irqfd-shared", "vhost-net"),
    ("vhost-net-irqfd", "virtio-net-pci-msi"),
    ("vhost-net-irqfd", "vhost-net-irqfd-shared"),
)

Samples = dict[str, dict[str, dict[int, float]]]  # metric -> config -> iteration -> value


def vcpus_of(row: dict[str, Any]) -> int:
    """A run's vCPUs (and queue pairs); rows recorded before there were several: 1."""
    return int(row.get("vcpus") or 1)


def sizes(rows: Iterable[dict[str, Any]]) -> list[int]:
    return sorted({vcpus_of(r) for r in rows if r.get("name") in SAMPLES})


def samples(rows: Iterable[dict[str, Any]], vcpus: int | None = None) -> Samples:
    """Per-iteration figures, of the runs with `vcpus` vCPUs if given."""
    out: Samples = {}
    for r in rows:
        metric = SAMPLES.get(r.get("name", ""))
        value = r.get("value")
        if metric is None or r.get("config") is None or not isinstance(value, int | float):
            continue
        if vcpus is not None and vcpus_of(r) != vcpus:
            continue
        out.setdefault(metric, {}).setdefault(r["config"], {})[int(r.get("iteration", 0))] = value
    return out


def clocks(rows: Iterable[dict[str, Any]]) -> set[str]:
    return {str(r["clock"]) for r in rows if r.get("name") in SAMPLES and r.get("clock")}


def _order(configs: Iterable[str]) -> list[str]:
    known = list(throughput.WIRINGS)
    return sorted(configs, key=lambda c: (known.index(c) if c in known else len(known), c))


def _cell(xs: list[float], scale: float, digits: int) -> str:
    if not xs:
        return "-"
    s = throughput.Summary("", tuple(xs))
    return f"{s.median * scale:.{digits}f} ({s.spread * 100:.1f}%, n={len(xs)})"


def table(data: Samples, columns: Iterable[str] = RR_COLUMNS) -> str:
    """One row per wiring: each figure's median, (its spread: (max - min) / median, runs);
    empty if none of `columns` was measured."""
    metrics = [m for m in columns if m in data]
    if not metrics:
        return ""
    configs = _order({c for m in metrics for c in data[m]})
    head = ["wiring", *(COLUMNS[m][0] for m in metrics)]
    body = [[c, *(_cell(list(data[m].get(c, {}).values()), *COLUMNS[m][1:]) for m in metrics)]
            for c in configs]
    return _grid([head, *body])


@dataclass(frozen=True)
class Ratio:
    metric: str
    num: str
    den: str
    per_iteration: tuple[float, ...]  # num/den of the same iteration

    @property
    def median(self) -> float:
        return statistics.median(self.per_iteration)

    @property
    def ahead(self) -> int:
        return sum(1 for r in self.per_iteration if r > 1)


def ratios(data: Samples, metric: str) -> list[Ratio]:
    by_config = data.get(metric, {})
    out = []
    for num, den in PAIRS:
        a, b = by_config.get(num, {}), by_config.get(den, {})
        common = sorted(set(a) & set(b))
        rs = tuple(a[i] / b[i] for i in common if b[i])
        if rs:
            out.append(Ratio(metric, num, den, rs))
    return out


def ratio_lines(data: Samples) -> list[str]:
    lines = []
    for metric in RATES:
        for r in ratios(data, metric):
            lines.append(f"{metric:12} {r.num + ' / ' + r.den:46} {r.median:.3f} "
                         f"[{min(r.per_iteration):.3f}-{max(r.per_iteration):.3f}] "
                         f"ahead in {r.ahead}/{len(r.per_iteration)}")
    return lines


def ordering(data: Samples, metric: str) -> list[str]:
    """The wirings from best to worst by the metric's median."""
    by_config = data.get(metric, {})
    return sorted(by_config, key=lambda c: -statistics.median(by_config[c].values()))


# Medians closer than this are a tie for an ordering: the reproducibility the cost-model board
# is held to (README, "What an interrupt costs"). A strict order of wirings that differ by less
# says nothing a second session would repeat.
TIE = 0.02


def ranking(data: Samples, metric: str, tie: float = TIE) -> str:
    """The ordering with ties: `a ≈ b > c`, a group holding every wiring within `tie` of its
    best."""
    by_config = data.get(metric, {})
    medians = {c: statistics.median(v.values()) for c, v in by_config.items()}
    groups: list[list[str]] = []
    for c in ordering(data, metric):
        if groups and medians[c] >= medians[groups[-1][0]] * (1 - tie):
            groups[-1].append(c)
        else:
            groups.append([c])
    return " > ".join(" ≈ ".join(sorted(g)) for g in groups)


def across_sessions(sessions: list[Samples]) -> str:
    """Each session's median per wiring, how far sessions differ, and their orderings."""
    lines = []
    for metric in RATES:
        if not any(metric in s for s in sessions):
            continue
        name, scale, digits = COLUMNS[metric]
        configs = _order({c for s in sessions for c in s.get(metric, {})})
        rows = [["wiring", *(f"session {i + 1}" for i in range(len(sessions))), "between"]]
        for c in configs:
            medians = [statistics.median(s[metric][c].values()) for s in sessions
                       if c in s.get(metric, {})]
            between = throughput.Summary(c, tuple(medians)).spread if len(medians) > 1 else 0.0
            rows.append([c, *(f"{m * scale:.{digits}f}" for m in medians),
                         f"{between * 100:.1f}%"])
        lines.append(f"{name}, median of each session:")
        lines.append(_grid(rows))
        orders = [" > ".join(ordering(s, metric)) for s in sessions]
        ranks = [ranking(s, metric) for s in sessions]
        for label, found in ((f"ordering by {name}", orders),
                             (f"ordering by {name}, within {TIE:.0%} a tie (≈)", ranks)):
            same = "the same in every session" if len(set(found)) == 1 else \
                "DIFFERS between sessions"
            lines.append(f"{label}: {same}")
            lines += [f"  session {i + 1}: {o}" for i, o in enumerate(found)]
    return "\n".join(lines)


def where_cost_goes(rows: Iterable[dict[str, Any]], vcpus: int | None = None) -> str:
    """Per wiring, the median exits per transaction by reason and the VMM's CPU time per
    transaction by thread kind, from the request/response runs (with `vcpus` if given)."""
    per: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        run = r.get("value")
        if r.get("name") != "cost.run" or not isinstance(run, dict) or not run.get("transactions"):
            continue
        if vcpus is not None and vcpus_of(r) != vcpus:
            continue
        n = run["transactions"]
        cell = per.setdefault(str(r.get("config")), {})
        for why, hits in run.get("exits", {}).items():
            cell.setdefault(f"exit:{why}", []).append(hits / n)
        for kind, ticks in run.get("vmm_ticks", {}).items():
            cell.setdefault(f"us:{kind}", []).append(ticks * 1e6 / run["ticks_per_s"] / n)
    keys = sorted({k for cell in per.values() for k in cell})
    head = ["wiring", *(k.removeprefix("exit:") if k.startswith("exit:") else
                        f"{k.removeprefix('us:')}-us" for k in keys)]
    body = [[c, *(f"{statistics.median(per[c][k]):.2f}" if k in per[c] else "-" for k in keys)]
            for c in _order(per)]
    return _grid([head, *body])


def interrupts_per_cpu(rows: Iterable[dict[str, Any]], vcpus: int) -> str:
    """Per wiring and workload, the median share of the device's queue interrupts each guest
    CPU took (`udp.irqs_per_cpu`, `blk.irqs_per_cpu`: a list per run, CPU 0 first)."""
    per: dict[tuple[str, str], list[list[float]]] = {}
    for r in rows:
        name, counts = str(r.get("name", "")), r.get("value")
        if not name.endswith(".irqs_per_cpu") or vcpus_of(r) != vcpus:
            continue
        if not isinstance(counts, list) or not sum(counts):
            continue
        shares = [c / sum(counts) for c in counts]
        per.setdefault((str(r.get("config")), name.split(".")[0]), []).append(shares)
    if not per:
        return ""
    head = ["wiring", "workload", *(f"CPU{i}" for i in range(vcpus))]
    body = []
    order = _order({c for c, _ in per})
    for config, workload in sorted(per, key=lambda k: (order.index(k[0]), k[1])):
        runs = per[(config, workload)]
        body.append([config, workload, *(
            f"{statistics.median(run[i] if i < len(run) else 0.0 for run in runs) * 100:.0f}%"
            for i in range(vcpus))])
    return _grid([head, *body])


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)
