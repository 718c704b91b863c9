"""Throughput figures: several runs per configuration, medians, spreads and side-by-side ratios.

Under emulation absolute numbers are noise; runs of all configurations are interleaved
(A B C A B C ...) so that drift hits each alike, and only ratios are compared. Pass or fail
comes from thresholds a board declares, never from a built-in figure.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


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


def interleave(configs: list[str], iterations: int) -> list[str]:
    return [c for _ in range(iterations) for c in configs]


def summarize(samples: dict[str, list[float]]) -> dict[str, Summary]:
    return {name: Summary(name, tuple(xs)) for name, xs in samples.items() if xs}


def ratios(summaries: dict[str, Summary], baseline: str) -> dict[str, float]:
    base = summaries[baseline].median
    return {name: s.median / base for name, s in summaries.items() if base}


def check_thresholds(summaries: dict[str, Summary], thresholds: dict[str, float]) -> list[str]:
    """Thresholds as `<config>_min_gbps` or `<config>_over_<other>`; returns the violations."""
    bad = []
    for key, limit in thresholds.items():
        if key.endswith("_min_gbps"):
            name = key.removesuffix("_min_gbps")
            if name in summaries and summaries[name].median / 1e9 < limit:
                bad.append(f"{name}: {summaries[name].median / 1e9:.3f} Gbit/s < {limit}")
        elif "_over_" in key:
            num, den = key.split("_over_", 1)
            if num in summaries and den in summaries:
                r = summaries[num].median / summaries[den].median
                if r < limit:
                    bad.append(f"{num}/{den}: {r:.2f} < {limit}")
    return bad
