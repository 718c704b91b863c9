"""The baseline comparison's statistical rule on recorded and generated samples, and the
differences it names."""

import random

import pytest

from hil.results import compare, figures, junit, measurements, stats


def recorded_samples(data):
    rows = measurements.parse((data / "results/pass/measurements.jsonl").read_text()).rows
    return figures.throughput_samples(rows)


def test_the_recorded_emulated_runs_carry_per_iteration_samples(data):
    samples = recorded_samples(data)
    assert set(samples) == {"virtio-net", "vhost-net", "virtio-net-pci-msi", "vhost-net-irqfd"}
    assert all(len(xs) == 3 for xs in samples.values())
    # Emulated figures are noisy: the rule's noise floor comes from them.
    assert max(stats.spread(xs) for xs in samples.values()) > 0.2


def test_the_same_emulated_figures_reordered_or_lower_within_their_spread_are_no_change(data):
    for config, xs in recorded_samples(data).items():
        for factor in (1.0, 0.9, 1.1):
            new = [x * factor for x in reversed(xs)]
            change = stats.decide(xs, new)
            assert change.verdict == "no change", (config, factor, change)


def noisy(rng, level, n, noise):
    return [level * (1 + rng.uniform(-noise, noise)) for _ in range(n)]


CONFIGS = ("virtio-net", "vhost-net", "virtio-net-pci-msi", "vhost-net-irqfd")


def run(rng, iterations, noise, level=0.8e9, drop=None):
    """One run's samples per configuration; `drop` = (config, factor) lowers one."""
    out = {}
    for c in CONFIGS:
        factor = drop[1] if drop and drop[0] == c else 1.0
        out[c] = noisy(rng, level * factor, iterations, noise)
    return out


def as_rows(samples):
    return [measurements.Measurement("t", "iperf3.received_bps", x, "bit/s",
                                     context=(("config", c),))
            for c, xs in samples.items() for x in xs]


@pytest.mark.parametrize("iterations", [3, 5])
@pytest.mark.parametrize("drop", [0.9, 0.8])
def test_a_change_inside_emulated_noise_is_never_a_regression(iterations, drop):
    rng = random.Random(1)
    # Emulated runs: +-15 % per sample (the recorded ones spread by 11-28 %); the true drop of
    # one configuration is no larger than that noise.
    for _ in range(100):
        old = run(rng, iterations, 0.15)
        new = run(rng, iterations, 0.15, drop=("vhost-net", drop))
        found = compare.throughput(as_rows(old), as_rows(new))
        assert not [t for t in found if t.change.verdict == "regressed"], found


@pytest.mark.parametrize("iterations", [3, 5])
def test_a_real_20_percent_drop_on_a_stable_board_is_always_a_regression(iterations):
    rng = random.Random(2)
    for _ in range(100):
        old = run(rng, iterations, 0.01, level=9.4e9)
        new = run(rng, iterations, 0.01, level=9.4e9, drop=("vhost-net-irqfd", 0.8))
        found = {t.config: t.change for t in compare.throughput(as_rows(old), as_rows(new))}
        assert found["vhost-net-irqfd"].verdict == "regressed", found
        assert found["vhost-net-irqfd"].high < 0.95
        assert {c.verdict for k, c in found.items() if k != "vhost-net-irqfd"} == {"no change"}


def test_a_stable_improvement_and_a_stable_nothing():
    old = [9.40e9, 9.42e9, 9.38e9]
    assert stats.decide(old, [x * 1.25 for x in old]).verdict == "improved"
    assert stats.decide(old, [9.41e9, 9.39e9, 9.43e9]).verdict == "no change"


def test_too_few_samples_decide_nothing():
    assert stats.decide([1.0], [0.5, 0.5]).verdict == "not decided"
    assert stats.decide([0.0, 0.0], [1.0, 1.0]).verdict == "not decided"


def test_the_interval_contains_the_ratio_of_medians():
    low, ratio, high = stats.ratio_interval([1.0, 1.1, 0.9, 1.05], [0.8, 0.85, 0.9, 0.82])
    assert low <= ratio <= high
    assert ratio == pytest.approx(0.835 / 1.025)


def cases_and_rows(data, name):
    d = data / "results" / name
    cases = junit.merge_outcomes(junit.parse((d / "junit.xml").read_text()).cases)
    rows = measurements.parse((d / "measurements.jsonl").read_text()).rows
    return cases, rows


def test_against_a_passing_baseline_the_failing_run_names_its_regressions(data):
    old_cases, old_rows = cases_and_rows(data, "pass")
    new_cases, new_rows = cases_and_rows(data, "fail")
    c = compare.compare(old_cases, old_rows, new_cases, new_rows)
    product = sorted(n for n, k in new_cases.items() if k.kind == "product")
    assert [t.nodeid for t in c.regressed] == product
    # An infrastructure failure is the lab's: a change, not a regression.
    assert [t.new for t in c.other] == ["failed (infrastructure)"]
    assert [(m.old, m.new) for m in c.modes] == [("per-vq", "shared")]
    assert "lines=3" in c.modes[0].what
    assert c.counters == [] and c.throughput_regressions == []
    back = compare.compare(new_cases, new_rows, old_cases, old_rows)
    assert [t.nodeid for t in back.fixed] == sorted(
        n for n, k in new_cases.items() if k.outcome == "failed")


def test_a_counter_that_opens_a_path_or_moves_beyond_tolerance_has_moved():
    assert compare.counter_moved(0, 3) and compare.counter_moved(5, 0)
    assert not compare.counter_moved(1754, 1500)
    assert compare.counter_moved(1754, 1000)
    assert not compare.counter_moved(0, 0)


def test_a_cost_model_run_is_never_compared_with_a_wall_clock_baseline():
    rng = random.Random(3)
    wall = as_rows(run(rng, 5, 0.01))
    # A fifth of the throughput, on the instruction-counting clock: another unit, not a drop.
    counted = [measurements.Measurement(r.test, r.name, r.value / 5, r.unit,
                                        context=(*r.context, ("clock", "icount")))
               for r in as_rows(run(rng, 5, 0.01))]
    changes = compare.throughput(wall, counted)
    assert changes and {c.change.verdict for c in changes} == {"not decided"}
    assert changes[0].change.reason == ("the baseline was measured on the wall clock, "
                                        "this run on icount")
    assert {c.change.verdict for c in compare.throughput(counted, counted)} == {"no change"}
