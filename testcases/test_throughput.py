"""Throughput between guest and board for each way of wiring virtio-net's interrupts.

Configurations run interleaved in one session and are compared as ratios; the board's
`options.thresholds` decide pass or fail (the virtual board declares none).
"""

import pytest

from hil import throughput
from hil.lab import probes

pytestmark = [pytest.mark.guest, pytest.mark.throughput]

# Name -> changes to the guest VMM's settings.
CONFIGS = {
    "virtio-net": {"vhost": False},  # QEMU's userspace backend
    "vhost-net": {"vhost": True},  # single line: QEMU relays every interrupt
    # The reference a user would pick instead: PCI with MSI-X through GICv2m (irqfd).
    "virtio-net-pci-msi": {"vhost": True, "net_device": "virtio-net-pci",
                           "net_options": {"romfile": ""}},
}


def test_throughput_of_each_interrupt_wiring_side_by_side(board, boot_guest, board_options,
                                                          measurements):
    iterations = int(board_options.get("throughput_iterations", 3))
    seconds = int(board_options.get("throughput_seconds", 3))
    configs = dict(CONFIGS)
    if "patched" in board_options.get("vmms", {}):
        # One line per queue: vhost-net's call eventfds reach the guest through KVM irqfds.
        configs["vhost-net-irqfd"] = {"vhost": True, "irq_lines": 3,
                                      "qemu": board_options["vmms"]["patched"]}
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for name in throughput.interleave(list(configs), iterations):
        guest = boot_guest(**configs[name])
        run = probes.iperf_with_counters(board, guest, seconds=seconds)
        samples[name].append(run.result.received_bps)
        measurements.record("iperf3.received_bps", run.result.received_bps, "bit/s", config=name)
    summaries = throughput.summarize(samples)
    for name, s in summaries.items():
        measurements.record(f"throughput.{name}.median_bps", s.median, "bit/s")
        measurements.record(f"throughput.{name}.spread", round(s.spread, 3), "")
    for name, r in throughput.ratios(summaries, "virtio-net").items():
        measurements.record(f"throughput.{name}.over_virtio-net", round(r, 3), "")
    assert all(s.median > 0 for s in summaries.values())
    violations = throughput.check_thresholds(summaries, board_options.get("thresholds") or {})
    assert not violations, "; ".join(violations)
