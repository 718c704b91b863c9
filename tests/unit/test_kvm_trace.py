import pytest

from hil import kvm_trace


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
