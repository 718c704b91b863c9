"""The scheduler benchmark's statistics (hil lab bench)."""

from __future__ import annotations

import math

from hil.scheduling.bench import HoldRecord, Result, blocked_time, double_holds, percentile


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 95) == 9.5
    assert math.isnan(percentile([], 50))


def test_only_time_without_any_free_place_is_taken_off_a_wait() -> None:
    samples = [(0.0, 1), (1.0, 0), (3.0, 2), (4.0, 0)]
    assert blocked_time(samples, 0.5, 3.5) == 2.0  # 1.0-3.0
    assert blocked_time(samples, 3.5, 5.0) == 1.0  # 4.0-5.0 (the last sample holds)
    assert blocked_time(samples, 2.0, 2.0) == 0.0


def test_a_double_hold_is_two_sessions_on_one_place_at_once() -> None:
    a = HoldRecord(1, "p", 0.0, 1.0, 3.0)
    b = HoldRecord(2, "p", 0.5, 3.0, 4.0)   # granted as a let go: fine
    c = HoldRecord(3, "p", 0.5, 3.5, 5.0)   # while b held it
    d = HoldRecord(4, "q", 0.5, 1.5, 5.0)   # another place
    assert double_holds([a, b, d]) == 0
    assert double_holds([a, b, c, d]) == 1


def test_a_wait_counts_only_what_the_scheduler_could_have_granted() -> None:
    r = Result("hil", 1, 2, 10.0)
    r.samples = [(0.0, 0, 1), (2.0, 1, 1), (2.5, 0, 0), (3.0, 0, 0)]
    r.holds = [HoldRecord(1, "p", 0.0, 2.5, 4.0)]
    assert r.latencies() == [0.5]
    assert r.idle_while_waiting() == 0.5
