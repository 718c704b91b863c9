"""Throughput figures: several runs per configuration, medians, spreads and side-by-side ratios.

Under emulation absolute numbers are noise; runs of all configurations are interleaved
(A B C A B C ...) so that drift hits each alike, and only ratios are compared. Pass or fail
comes from thresholds a board declares, never from a built-in figure; a board that declares
none is measured, not gated.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hil.measure import interrupts, kvm_trace, virtio

# The configurations the throughput testcase runs (it holds their VMM settings), each with how
# its queue interrupts must reach the guest; every run proves it (wiring_problems). Names
# contain no underscore, so that threshold keys split unambiguously.
CONFIGS = {
    "virtio-net": "single",  # QEMU's userspace backend on one virtio-mmio line
    "vhost-net": "single",  # one line: QEMU relays every interrupt
    "virtio-net-pci-msi": "msi-x",  # the reference: PCI, MSI-X through GICv2m, irqfd
    "vhost-net-irqfd": "per-vq",  # a line per queue, raised by KVM irqfds
}
BASELINE = "virtio-net"
NET_QUEUES = ("input.0", "output.0")  # virtio-net with one queue pair

# Each way of wiring virtio-net's interrupts that the wiring benchmark (`hil bench --wiring`)
# compares: the throughput testcase's, and shared mode (one line for every queue, by irqfd).
WIRINGS = {**CONFIGS, "vhost-net-irqfd-shared": "shared"}

# Threshold keys: `<config>_min_gbps`, `<num>_over_<den>` (throughput), `<config>_min_tps`,
# `<num>_tps_over_<den>` (request/response transactions), `<config>_max_<counter>` (a cost
# counter's median, see COUNTERS). Ratios and minima are lower bounds, counters upper bounds.
MIN_GBPS = "_min_gbps"
MIN_TPS = "_min_tps"
OVER = "_over_"
TPS = "_tps"
MAX = "_max_"
THROUGHPUT = "throughput"
TRANSACTIONS = "transactions"
COUNTERS = ("exits_per_interrupt", "injections_per_interrupt", "vmm_us_per_transaction")


@dataclass(frozen=True)
class Threshold:
    metric: str  # THROUGHPUT, TRANSACTIONS or one of COUNTERS
    configs: tuple[str, ...]  # one, or (numerator, denominator) of a ratio

    @property
    def ratio(self) -> bool:
        return len(self.configs) == 2


def parse_key(key: str) -> Threshold | None:
    """A threshold key's metric and configurations; None for a key of no known form."""
    if key.endswith(MIN_GBPS):
        return Threshold(THROUGHPUT, (key.removesuffix(MIN_GBPS),))
    if key.endswith(MIN_TPS):
        return Threshold(TRANSACTIONS, (key.removesuffix(MIN_TPS),))
    if MAX in key:
        config, counter = key.split(MAX, 1)
        return Threshold(counter, (config,)) if counter in COUNTERS else None
    if OVER in key:
        num, den = key.split(OVER, 1)
        if num.endswith(TPS):
            return Threshold(TRANSACTIONS, (num.removesuffix(TPS), den))
        return Threshold(THROUGHPUT, (num, den))
    return None


def named_configs(key: str) -> tuple[str, ...] | None:
    """The configurations a threshold key names; None for a key of no known form."""
    t = parse_key(key)
    return t.configs if t else None


def of_metrics(thresholds: dict[str, Any], metrics: Iterable[str]) -> dict[str, Any]:
    """The thresholds on these metrics: what a case that measures only them can check."""
    wanted = set(metrics)
    return {k: v for k, v in thresholds.items() if (t := parse_key(str(k))) and t.metric in wanted}


@dataclass(frozen=True)
class Summary:
    name: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much one run can be trusted."""
        return (max(self.samples) - min(self.samples)) / self.median if self.median else 0.0


def vmm_settings(board_options: dict[str, Any], configs: Iterable[str] = CONFIGS,
                 pairs: int = 1) -> dict[str, dict[str, Any]]:
    """Configuration name -> changes to the guest VMM's settings, for what this board has;
    `pairs`: virtio-net's queue pairs, a line for each queue in per-vq mode."""
    settings: dict[str, dict[str, Any]] = {
        "virtio-net": {"vhost": False},  # QEMU's userspace backend
        "vhost-net": {"vhost": True},
    }
    if board_options.get("gic_version", 2) == 2:
        # MSI-X through the guest's GICv2m; a GICv3 board's guest has no ITS (hil/labgrid/vmm.py).
        settings["virtio-net-pci-msi"] = {"vhost": True, "net_device": "virtio-net-pci",
                                          "net_options": {"romfile": ""}}
    patched = (board_options.get("vmms") or {}).get("patched")
    if patched:
        # A line per queue, or one line for all queues (two lines: config and queues, fewer
        # than per-vq needs): vhost-net's call eventfds reach the guest through KVM irqfds.
        settings["vhost-net-irqfd"] = {"vhost": True, "irq_lines": 1 + 2 * pairs, "qemu": patched}
        settings["vhost-net-irqfd-shared"] = {"vhost": True, "irq_lines": 2, "qemu": patched}
    return {name: settings[name] for name in configs if name in settings}


def interleave(configs: list[str], iterations: int) -> list[str]:
    return [c for _ in range(iterations) for c in configs]


def summarize(samples: dict[str, list[float]]) -> dict[str, Summary]:
    return {name: Summary(name, tuple(xs)) for name, xs in samples.items() if xs}


def ratios(summaries: dict[str, Summary], baseline: str) -> dict[str, float]:
    base = summaries[baseline].median
    return {name: s.median / base for name, s in summaries.items() if base}


def _is_number(value: object) -> bool:
    # YAML reads `yes` as True, and bool is an int: a limit of True is a typo, not 1.
    return isinstance(value, int | float) and not isinstance(value, bool)


def threshold_problems(thresholds: Any, configs: Iterable[str] = WIRINGS) -> list[str]:
    """What is wrong with a board's `options.thresholds`, each message saying what to fix.

    Checked before power-on: a misspelt key would otherwise never be compared and the gate
    would pass without having been applied.
    """
    if thresholds is None:
        return []
    if not isinstance(thresholds, dict):
        return [f"thresholds must be a mapping of key to number, not {type(thresholds).__name__}"]
    known = list(configs)
    problems = []
    for key, limit in thresholds.items():
        names = named_configs(str(key))
        if names is None:
            problems.append(f"threshold {key!r}: unknown key; write `<config>{MIN_GBPS}`, "
                            f"`<config>{OVER}<config>`, `<config>{MIN_TPS}`, "
                            f"`<config>{TPS}{OVER}<config>` or `<config>{MAX}<counter>` "
                            f"({', '.join(COUNTERS)})")
        else:
            problems += [f"threshold {key!r}: no configuration {name!r}; "
                         f"choose one of {', '.join(known)}" for name in names if name not in known]
        if not _is_number(limit):
            problems.append(f"threshold {key!r}: limit {limit!r} is not a number; "
                            f"write it unquoted, e.g. 1.5")
    return problems


@dataclass(frozen=True)
class GateResult:
    """A throughput gate's verdict. Without thresholds nothing was gated, which a report must
    not read as "all met"."""

    gated: bool
    violations: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        if not self.gated:
            return "not gated"
        return "violated" if self.violations else "met"


def check_thresholds(summaries: dict[str, Summary], thresholds: dict[str, float],
                     others: dict[str, dict[str, Summary]] | None = None) -> GateResult:
    """Thresholds (keys as parse_key reads them) against throughput `summaries` and the
    summaries of `others` metrics (TRANSACTIONS, COUNTERS), each by configuration.

    Fails closed: a threshold that cannot be evaluated (a configuration or a metric that did
    not run, a key of no known form) is a violation, never a silent pass.
    """
    by_metric = {THROUGHPUT: summaries, **(others or {})}
    bad = []
    for key, limit in thresholds.items():
        t = parse_key(key)
        if t is None:
            bad.append(f"{key}: not a threshold key")
            continue
        measured = by_metric.get(t.metric)
        if measured is None:
            bad.append(f"{key}: {t.metric} not measured, so the threshold cannot be met")
            continue
        missing = [n for n in t.configs if n not in measured]
        if missing:
            bad.append(f"{key}: {', '.join(missing)} not measured, so the threshold cannot be met")
        elif t.ratio:
            num, den = t.configs
            if not measured[den].median:
                bad.append(f"{num}/{den}: {den} moved nothing, so the ratio is undefined")
                continue
            r = measured[num].median / measured[den].median
            if r < limit:
                what = "" if t.metric == THROUGHPUT else f" {t.metric}"
                bad.append(f"{num}/{den}{what}: {r:.2f} < {limit}")
        elif t.metric == THROUGHPUT:
            gbps = measured[t.configs[0]].median / 1e9
            if gbps < limit:
                bad.append(f"{t.configs[0]}: {gbps:.3f} Gbit/s < {limit}")
        elif t.metric == TRANSACTIONS:
            tps = measured[t.configs[0]].median
            if tps < limit:
                bad.append(f"{t.configs[0]}: {tps:.0f} transactions/s < {limit}")
        else:
            value = measured[t.configs[0]].median
            if value > limit:
                bad.append(f"{t.configs[0]}: {t.metric} {value:.3g} > {limit}")
    return GateResult(gated=bool(thresholds), violations=tuple(bad))


@dataclass(frozen=True)
class Wiring:
    """How virtio-net's interrupts reached the guest during one run."""

    irq_mode: str | None  # the driver's sysfs irq_mode; None on PCI or an unpatched guest
    controllers: dict[str, str]  # line ("" in single mode, "config", "input.0", ...) -> controller
    interrupts: dict[str, int]  # line -> interrupts the guest took during the run
    injections: dict[str, int]  # GIC line -> times the VMM raised it through KVM_IRQ_LINE


def observe(net: virtio.VirtioDevice, before: list[interrupts.IrqRow],
            after: list[interrupts.IrqRow], counters: kvm_trace.Counters) -> Wiring:
    lines = virtio.lines_of(after, net.name)
    grown = interrupts.delta(before, after)
    return Wiring(
        irq_mode=net.irq_mode,
        controllers={k: r.controller or "" for k, r in lines.items()},
        interrupts={k: sum(grown.get(r.irq, ())) for k, r in lines.items()},
        # An MSI row's hwirq is a vector number, not a GIC INTID that KVM_IRQ_LINE could name.
        injections={k: counters.userspace_injections([r.hwirq]) for k, r in lines.items()
                    if r.hwirq is not None and interrupts.gic_spi(r) is not None},
    )


def queue_lines(mode: str, queues: Sequence[str] = NET_QUEUES) -> tuple[str, ...]:
    """The lines that carry `queues`' interrupts in `mode` (names as in Wiring)."""
    return {"single": ("",), "shared": ("queues",)}.get(mode, tuple(queues))


def wiring_problems(config: str, w: Wiring, queues: Sequence[str] = NET_QUEUES) -> list[str]:
    """Why a run of `config` did not run as named (empty if it did). `queues`: the device's
    queues with interrupts (virtio-net's NET_QUEUES with one queue pair)."""
    expected = WIRINGS[config]
    if expected == "msi-x":
        missing = [q for q in queues if q not in w.controllers]
        if missing:
            return [f"{config}: no interrupt line for {', '.join(missing)} (lines: {sorted(w.controllers)})"]
        problems = [f"{config}: {q} is on {w.controllers[q]}, not MSI-X" for q in queues
                    if "MSI" not in w.controllers[q]]
    else:
        if w.irq_mode != expected:
            return [f"{config}: irq_mode is {w.irq_mode}, not {expected}"]
        want = virtio.expected_line_names(expected, list(queues))
        if set(w.controllers) != want:
            return [f"{config}: lines {sorted(w.controllers)}, not {sorted(want)}"]
        problems = []
        if expected in ("per-vq", "shared"):
            injected = sum(w.injections.get(q, 0) for q in queue_lines(expected, queues))
            if injected:
                problems.append(f"{config}: the VMM injected {injected} queue interrupts; "
                                "irqfd should have raised them all")
    lines = queue_lines(expected, queues)
    if not sum(w.interrupts[q] for q in lines):
        problems.append(f"{config}: no interrupt on {' or '.join(q or 'its line' for q in lines)}")
    return problems
