"""Throughput between guest and board for each way of wiring virtio-net's interrupts.

Configurations (named in hil/throughput.py) run interleaved in one session and are compared
as ratios; each run first proves it was wired as named. The board's `options.thresholds`
decide pass or fail; a board without thresholds (the virtual one) is measured, not gated.
"""

from dataclasses import asdict
from typing import Any

import pytest

from hil import throughput, virtio
from hil.lab import probes

pytestmark = [pytest.mark.guest, pytest.mark.throughput]


def vmm_settings(board_options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Configuration name -> changes to the guest VMM's settings, for what this board has."""
    settings: dict[str, dict[str, Any]] = {
        "virtio-net": {"vhost": False},  # QEMU's userspace backend
        "vhost-net": {"vhost": True},
        "virtio-net-pci-msi": {"vhost": True, "net_device": "virtio-net-pci",
                               "net_options": {"romfile": ""}},
    }
    if "patched" in board_options.get("vmms", {}):
        # One line per queue: vhost-net's call eventfds reach the guest through KVM irqfds.
        settings["vhost-net-irqfd"] = {"vhost": True, "irq_lines": 3,
                                       "qemu": board_options["vmms"]["patched"]}
    return {name: settings[name] for name in throughput.CONFIGS if name in settings}


def test_throughput_of_each_interrupt_wiring_side_by_side(board, boot_guest, board_options,
                                                          measurements):
    thresholds = board_options.get("thresholds") or {}
    # Their form was checked with the environment file, before power-on (hil/lab/envfile.py).
    iterations = int(board_options.get("throughput_iterations", 3))
    seconds = int(board_options.get("throughput_seconds", 3))
    configs = vmm_settings(board_options)
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
        measurements.record("iperf3.received_bps", run.result.received_bps, "bit/s", config=name)
    summaries = throughput.summarize(samples)
    for name, s in summaries.items():
        measurements.record(f"throughput.{name}.median_bps", s.median, "bit/s")
        measurements.record(f"throughput.{name}.spread", round(s.spread, 3), "")
    for name, r in throughput.ratios(summaries, throughput.BASELINE).items():
        measurements.record(f"throughput.{name}.over_{throughput.BASELINE}", round(r, 3), "")
    assert all(s.median > 0 for s in summaries.values())
    gate = throughput.check_thresholds(summaries, thresholds)
    # "not gated" must not read as a passed gate in a report: the verdict is recorded as is.
    measurements.record("throughput.gate", gate.verdict)
    assert not gate.violations, "; ".join(gate.violations)
