"""The guest: boots nested under KVM on the board, with its virtio-mmio devices on the GIC."""

import pytest

from hil.labgrid import probes
from hil.measure import interrupts

pytestmark = pytest.mark.guest


def test_guest_boots_nested_under_kvm_with_the_boards_in_kernel_gic(guest, board, vmm,
                                                                     board_options):
    assert vmm.alive()
    assert "-enable-kvm" in board.check("cat /proc/$(cat /run/hil-vmm.pid)/cmdline | tr '\\0' ' '")
    # Under KVM, QEMU uses KVM's in-kernel vGIC of the board's version: the guest sees that GIC.
    declared = board_options.get("gic_version", 2)
    rows = probes.guest_interrupts(guest)
    timer = [r for r in rows if r.name == "arch_timer"]
    assert timer and timer[0].controller in interrupts.GIC_CONTROLLERS[declared], timer


def test_guest_interrupts_parse_into_rows(guest, measurements):
    text = guest.read("/proc/interrupts")
    rows = interrupts.parse(text)
    cpus = int(guest.check("grep -c ^processor /proc/cpuinfo"))
    numbered = [r for r in rows if r.numbered]
    assert numbered and all(len(r.counts) == cpus for r in numbered)
    virtio = interrupts.by_name(rows, "virtio")
    assert virtio, f"no virtio interrupt in the guest:\n{text}"
    for row in virtio:
        assert row.controller and row.controller.startswith("GIC")
        assert row.trigger in ("Edge", "Level")
        assert interrupts.gic_spi(row) is not None
        measurements.record(f"irq.{row.name}", {"spi": interrupts.gic_spi(row),
                                                "trigger": row.trigger, "total": row.total})
