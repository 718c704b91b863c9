"""The board: KVM at EL2 with the virtualization extensions of the GIC it declares
(`options.gic_version`: vgic-v2, or vgic-v3 on a GICv3 board)."""

import pytest

from hil.labgrid import vmm
from hil.measure import interrupts, kernel_log

pytestmark = pytest.mark.board


def test_board_boots_at_el2_and_initialises_kvm(board):
    status = kernel_log.parse_dmesg(board.check("dmesg"))
    assert status.booted_at_el2, "the board kernel did not start its CPUs at EL2"
    assert status.kvm_mode in ("VHE", "nVHE", "protected"), "KVM did not initialise on the board"
    board.check("test -c /dev/kvm")


def test_board_runs_its_declared_gic_with_the_vgic_maintenance_interrupt(board, board_options):
    declared = board_options.get(vmm.GIC_OPTION, 2)
    status = kernel_log.parse_dmesg(board.check("dmesg"))
    assert status.gic_version == declared, f"the board declares GICv{declared}"
    assert status.vgic_maintenance_irq is not None, "KVM found no vgic maintenance interrupt"
    rows = interrupts.parse(board.read("/proc/interrupts"))
    vgic = [r for r in rows if r.name == "vgic"]
    assert vgic and vgic[0].controller in interrupts.GIC_CONTROLLERS[declared], \
        f"no vgic line on a GICv{declared}"
    # The maintenance interrupt is PPI 9 (hwirq 25) on both.
    assert vgic[0].hwirq == 25


def test_board_has_vhost_net_and_tun(board):
    modules = board.read("/proc/modules")
    assert "vhost_net" in modules
    board.check("test -c /dev/vhost-net && test -c /dev/net/tun")
