"""When a throughput change between two runs is real: the rule a baseline comparison states.

Each run measures every configuration several times, interleaved with the others (hil/
throughput.py), so each has a set of per-iteration samples. The rule:

1. the change is the ratio of medians, new / old;
2. its 95 % confidence interval comes from a percentile bootstrap (each sample set resampled
   with replacement, RESAMPLES times, with a fixed seed so that a report is reproducible);
3. the noise is the board's: the largest relative spread, (max - min) / median, of any
   configuration's samples in either run (interleaving makes drift hit every configuration
   alike), scaled by (n + 1) / (n - 1) because the range of n samples underestimates the range
   of the noise (by half for n = 3), and never less than MIN_EFFECT;
4. a regression is an interval wholly below 1 - noise, an improvement one wholly above
   1 + noise; anything else is no change.

So a change no larger than the spread the runs themselves show (emulated boards spread by
20-30 %) is never a regression, while on a board whose runs agree within a few per cent a
20 % drop lies far outside both the interval and the noise, and always is one. Fewer than
MIN_SAMPLES samples on either side decide nothing.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_EFFECT = 0.05
MIN_SAMPLES = 2
SEED = 11

RULE = (f"ratio of medians (new / old) of the per-iteration samples, with a {CONFIDENCE:.0%} "
        f"percentile-bootstrap interval ({RESAMPLES} resamples, fixed seed); a regression when the "
        "whole interval lies below 1 - noise, an improvement when above 1 + noise, where noise "
        "is the board's: the largest relative spread (max - min) / median of any configuration's "
        "n samples in either run, times (n + 1) / (n - 1) (the range of a few samples "
        f"underestimates the noise's), and at least {MIN_EFFECT:.0%}; fewer than {MIN_SAMPLES} "
        "samples on either side decide nothing")


def spread(samples: Sequence[float]) -> float:
    m = statistics.median(samples)
    return (max(samples) - min(samples)) / m if m else float("inf")


def noise(sample_sets: Iterable[Sequence[float]], min_effect: float = MIN_EFFECT) -> float:
    """The board's noise from all its sample sets (each configuration, both runs)."""
    out = min_effect
    for xs in sample_sets:
        if len(xs) >= MIN_SAMPLES:
            out = max(out, spread(xs) * (len(xs) + 1) / (len(xs) - 1))
    return out


def ratio_interval(old: Sequence[float], new: Sequence[float], confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float, float]:
    """(low, ratio of medians, high): the bootstrap interval of median(new) / median(old)."""
    base = statistics.median(old)
    if not base:
        raise ValueError("the old median is zero: no ratio")
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        o = statistics.median(rng.choices(old, k=len(old)))
        n = statistics.median(rng.choices(new, k=len(new)))
        ratios.append(n / o if o else float("inf"))
    ratios.sort()
    tail = (1 - confidence) / 2
    low = ratios[int(tail * (resamples - 1))]
    high = ratios[round((1 - tail) * (resamples - 1))]
    return low, statistics.median(new) / base, high


@dataclass(frozen=True)
class Change:
    verdict: str  # regressed, improved, no change, not decided
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    noise: float | None = None
    reason: str = ""


def decide(old: Sequence[float], new: Sequence[float], board_noise: float | None = None) -> Change:
    """`board_noise`: noise() of all the board's sample sets; without it, of these two."""
    if len(old) < MIN_SAMPLES or len(new) < MIN_SAMPLES:
        return Change("not decided", reason=f"{len(old)} old and {len(new)} new samples; "
                                            f"the rule needs {MIN_SAMPLES} on each side")
    if not statistics.median(old):
        return Change("not decided", reason="the old median is zero")
    noise_ = noise([old, new]) if board_noise is None else max(board_noise, noise([old, new]))
    low, ratio, high = ratio_interval(old, new)
    if high < 1 - noise_:
        verdict, why = "regressed", f"the interval lies below {1 - noise_:.2f}"
    elif low > 1 + noise_:
        verdict, why = "improved", f"the interval lies above {1 + noise_:.2f}"
    else:
        verdict, why = "no change", f"the interval does not clear 1 ± {noise_:.2f}"
    return Change(verdict, ratio, low, high, noise_, why)
