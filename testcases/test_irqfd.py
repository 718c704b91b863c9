"""irqfd bypass: who raises the guest's virtio-mmio interrupts, the VMM or KVM itself?

Counted on the board with ftrace histograms during an iperf3 run: kvm_irq_line is an
injection from userspace (the VMM), and each InterruptStatus read or InterruptACK write is an
MMIO exit to the VMM.
"""

import pytest

from hil.labgrid import probes
from hil.measure import interrupts, kvm_trace, virtio

pytestmark = [pytest.mark.guest, pytest.mark.irqfd]


def test_single_line_vhost_net_interrupts_go_through_userspace(board, guest, measurements):
    run = probes.iperf_with_counters(board, guest, seconds=3)
    rows = probes.guest_interrupts(guest)
    (net,) = [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "net"]
    line = virtio.lines_of(rows, net.name)[""]
    intid = line.hwirq
    handled = sum(interrupts.delta(run.irq_before, run.irq_after)[line.irq])
    base = probes.virtio_transports(guest)[net.name]
    injected = run.counters.userspace_injections([intid])
    status_reads = run.counters.mmio_exits(base, kvm_trace.INTERRUPT_STATUS)
    acks = run.counters.mmio_exits(base, kvm_trace.INTERRUPT_ACK)
    measurements.record("irqfd.single.userspace_injections", injected, "count", intid=intid)
    measurements.record("irqfd.single.guest_interrupts", handled, "count")
    measurements.record("irqfd.single.mmio_exits_per_interrupt",
                        round((status_reads + acks) / max(handled, 1), 3), "exits")
    measurements.record("iperf3.received_bps", run.result.received_bps, "bit/s",
                        backend="vhost-net", lines=1)
    assert handled > 0, "no interrupt reached the guest's virtio-net line"
    # Without irqfd every interrupt is raised by the VMM...
    assert injected >= handled * 0.9, f"{injected} userspace injections for {handled} interrupts"
    # ...and costs the guest a status read and an acknowledgement, each an exit to the VMM.
    assert status_reads >= handled * 0.9 and acks >= handled * 0.9, (status_reads, acks, handled)
