from hil import kernel_log


def test_recorded_board_boot_is_el2_vhe_gicv2(data):
    s = kernel_log.parse_dmesg((data / "board-dmesg.txt").read_text())
    assert s.booted_at_el2 and s.kvm_mode == "VHE" and s.gic_version == 2
    assert s.vgic_maintenance_irq == 9


def test_el1_boot_without_kvm():
    s = kernel_log.parse_dmesg(
        "[0.1] CPU: All CPU(s) started at EL1\n[0.2] kvm [1]: HYP mode not available\n")
    assert not s.booted_at_el2 and s.kvm_mode is None and s.vgic_maintenance_irq is None


def test_nvhe_and_gicv3():
    s = kernel_log.parse_dmesg("kvm [1]: Hyp nVHE mode initialized successfully\nGICv3: 256 SPIs\n")
    assert s.kvm_mode == "nVHE" and s.gic_version == 3
