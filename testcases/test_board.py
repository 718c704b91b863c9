"""The board: KVM at EL2 with the GICv2 virtualization extensions (vgic-v2)."""

import pytest

from hil import interrupts, kernel_log

pytestmark = pytest.mark.board


def test_board_boots_at_el2_and_initialises_kvm(board):
    status = kernel_log.parse_dmesg(board.check("dmesg"))
    assert status.booted_at_el2, "the board kernel did not start its CPUs at EL2"
    assert status.kvm_mode in ("VHE", "nVHE", "protected"), "KVM did not initialise on the board"
    board.check("test -c /dev/kvm")


def test_board_runs_a_gicv2_with_the_vgic_maintenance_interrupt(board):
    status = kernel_log.parse_dmesg(board.check("dmesg"))
    assert status.gic_version == 2
    assert status.vgic_maintenance_irq is not None, "KVM found no vgic maintenance interrupt"
    rows = interrupts.parse(board.read("/proc/interrupts"))
    vgic = [r for r in rows if r.name == "vgic"]
    assert vgic and vgic[0].controller in ("GICv2", "GIC-0"), "no vgic line on a GICv2"
    # The GICv2 maintenance interrupt is PPI 9 (hwirq 25).
    assert vgic[0].hwirq == 25


def test_board_has_vhost_net_and_tun(board):
    modules = board.read("/proc/modules")
    assert "vhost_net" in modules
    board.check("test -c /dev/vhost-net && test -c /dev/net/tun")
