"""Throughput between guest and board for each way of wiring virtio-net's interrupts.

Configurations (named in hil/measure/throughput.py) run interleaved in one session and are compared
as ratios; each run first proves it was wired as named. The board's `options.thresholds`
decide pass or fail; a board without thresholds (the virtual one) is measured, not gated.
"""

from dataclasses import asdict

import pytest

from hil.labgrid import probes
from hil.measure import costmodel, throughput, virtio

pytestmark = [pytest.mark.guest, pytest.mark.throughput]


def test_throughput_of_each_interrupt_wiring_side_by_side(board, boot_guest, board_options,
                                                          measurements):
    thresholds = board_options.get("thresholds") or {}
    # Their form was checked with the environment file, before power-on (hil/preflight/envfile.py).
    iterations = int(board_options.get("throughput_iterations", 3))
    seconds = int(board_options.get("throughput_seconds", 3))
    configs = throughput.vmm_settings(board_options)
    # A cost-model board's figures count instructions, not time: each says which (costmodel).
    clock = costmodel.clock(board_options)
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for name in throughput.interleave(list(configs), iterations):
        guest = boot_guest(**configs[name])
        run = probes.iperf_with_counters(board, guest, seconds=seconds)
        (net,) = [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "net"]
        wiring = throughput.observe(net, run.irq_before, run.irq_after, run.counters)
        measurements.record("throughput.wiring", asdict(wiring), config=name)
        wrong = throughput.wiring_problems(name, wiring)
        assert not wrong, "; ".join(wrong)
        samples[name].append(run.result.received_bps)
        measurements.record("iperf3.received_bps", run.result.received_bps, "bit/s", config=name,
                            clock=clock)
    summaries = throughput.summarize(samples)
    for name, s in summaries.items():
        measurements.record(f"throughput.{name}.median_bps", s.median, "bit/s", clock=clock)
        measurements.record(f"throughput.{name}.spread", round(s.spread, 3), "", clock=clock)
    for name, r in throughput.ratios(summaries, throughput.BASELINE).items():
        measurements.record(f"throughput.{name}.over_{throughput.BASELINE}", round(r, 3), "",
                            clock=clock)
    assert all(s.median > 0 for s in summaries.values())
    # Thresholds on transactions and cost counters are the wiring benchmark's (hil bench).
    gate = throughput.check_thresholds(
        summaries, throughput.of_metrics(thresholds, [throughput.THROUGHPUT]))
    # "not gated" must not read as a passed gate in a report: the verdict is recorded as is.
    measurements.record("throughput.gate", gate.verdict)
    assert not gate.violations, "; ".join(gate.violations)
