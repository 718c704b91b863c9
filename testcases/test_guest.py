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


def test_guest_interrupts_parse_into_rows(guest, measurements, board_options):
    text = guest.read("/proc/interrupts")
    rows = interrupts.parse(text)
    cpus = int(guest.check("grep -c ^processor /proc/cpuinfo"))
    numbered = [r for r in rows if r.numbered]
    assert numbered and all(len(r.counts) == cpus for r in numbered)
    # The virtio-mmio devices' lines; the guest's virtio console is on PCI, with MSI-X where
    # the GIC has a frame for it.
    gic = interrupts.GIC_CONTROLLERS[board_options.get("gic_version", 2)]
    virtio = [r for r in interrupts.by_name(rows, "virtio") if r.controller in gic]
    assert virtio, f"no virtio interrupt on the GIC in the guest:\n{text}"
    for row in virtio:
        assert row.controller and row.controller.startswith("GIC")
        assert row.trigger in ("Edge", "Level")
        assert interrupts.gic_spi(row) is not None
        measurements.record(f"irq.{row.name}", {"spi": interrupts.gic_spi(row),
                                                "trigger": row.trigger, "total": row.total})


def test_the_guests_shell_runs_on_the_console_its_board_declares(guest, vmm):
    """A virtio console (hvc0) unless the board says uart (its PL011); either way the kernel
    writes to it. On a virtio console the early boot went to the PL011 first (earlycon), into
    the same stream (test_virtio_mmio.py boots a guest with its shell on the PL011)."""
    tty = {"virtio": "hvc0", "uart": "ttyAMA0"}[vmm.config.console]
    # /dev/console, enabled: "hvc0  -W- (EC  )  229:0"
    first = guest.check("cat /proc/consoles").splitlines()[0]
    assert first.split()[0] == tty and "(EC" in first, first
    early = guest.check("dmesg | grep 'bootconsole \\[pl11\\]' || true")
    if vmm.config.console == "virtio":
        assert "bootconsole [pl11] enabled" in early and "[pl11] disabled" in early, early
    else:
        assert early == "", early
