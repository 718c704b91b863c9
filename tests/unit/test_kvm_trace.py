import pytest

from hil.measure import kvm_trace


def test_recorded_single_line_vhost_net_run(data):
    text = (data / "hist-kvm_irq_line.txt").read_text()
    hist = kvm_trace.parse_hist(text)
    assert hist[(79, 1)] == 1941 and hist[(79, 0)] == 1366 and kvm_trace.dropped(text) == 0
    c = kvm_trace.Counters(hist, {}, {})
    assert c.userspace_injections([79]) == 1941
    assert c.userspace_injections([80]) == 0


def test_irqfd_injections_are_vgic_updates_the_vmm_did_not_make():
    c = kvm_trace.Counters({(79, 1): 10}, {(79, 1): 10, (80, 1): 500, (80, 0): 3}, {})
    assert c.kernel_injections([79]) == 0 and c.kernel_injections([80]) == 500


def test_mmio_exits_by_register_and_direction():
    text = ("{ gpa:  167788128, type:          0 } hitcount:       1366\n"
            "{ gpa:  167788128, type:          1 } hitcount:       1366\n"
            "{ gpa:  167788132, type:          2 } hitcount:       1366\n")
    c = kvm_trace.Counters({}, {}, kvm_trace.parse_hist(text))
    base = kvm_trace.transport_base("a003e00.virtio_mmio")
    assert base == 0xA003E00
    assert c.mmio_exits(base, kvm_trace.INTERRUPT_STATUS) == 1366
    assert c.mmio_exits(base, kvm_trace.INTERRUPT_ACK) == 1366


def test_hex_keys_and_symbolic_values_parse():
    assert kvm_trace.parse_hist("{ gsi:         47, level:          1 } hitcount:          3\n") == \
        {(47, 1): 3}
    with pytest.raises(ValueError):
        kvm_trace.parse_hist("{ type: write } hitcount: 1\n")


def test_recorded_exits_of_a_request_response_run_by_reason(data):
    exits = kvm_trace.parse_hist((data / "hist-kvm_exit.txt").read_text())
    to_vmm = kvm_trace.parse_hist((data / "hist-kvm_userspace_exit.txt").read_text())
    c = kvm_trace.Counters({}, {}, {}, exits, to_vmm)
    assert c.exits_by_reason() == {"hvc": 25, "irq": 1102, "wfx": 4050, "dabt": 5829}
    assert c.total_exits() == 11006
    # Only the data aborts the kernel cannot emulate itself reach the VMM, as MMIO.
    assert c.vmm_exits() == {"mmio": 3724}


def test_exits_of_unnamed_classes_and_exceptions_keep_their_numbers():
    c = kvm_trace.Counters({}, {}, {}, {(2, 0x19): 3, (1, 0): 2, (0, 0): 1}, {(99,): 1})
    assert c.exits_by_reason() == {"ec0x19": 3, "exception1": 2, "irq": 1}
    assert c.vmm_exits() == {"reason99": 1}


def test_the_histograms_armed_on_the_board_count_every_exit():
    cmds = "\n".join(kvm_trace.arm_commands())
    assert "events/kvm/kvm_exit/trigger" in cmds and "hist:keys=ret,esr_ec:size=4096" in cmds
    assert "events/kvm/kvm_userspace_exit/trigger" in cmds
