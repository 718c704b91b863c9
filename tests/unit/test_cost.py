from hil.measure import cost, kvm_trace, procstat
from hil.measure.throughput import Wiring

BASE = 0xA003E00


def thread(tid: int, comm: str, utime: int, stime: int, gtime: int) -> procstat.Thread:
    return procstat.Thread(tid, comm, utime, stime, gtime)


BEFORE = {1: thread(1, "qemu-system-aar", 10, 5, 0), 2: thread(2, "CPU 0/KVM", 100, 20, 90)}
AFTER = {1: thread(1, "qemu-system-aar", 40, 15, 0), 2: thread(2, "CPU 0/KVM", 200, 40, 150),
         3: thread(3, "vhost-1", 0, 30, 0)}


def single_line_run(injected: int) -> tuple[Wiring, kvm_trace.Counters]:
    wiring = Wiring("single", {"": "GIC-0"}, {"": 1000}, {"": injected})
    counters = kvm_trace.Counters(
        {}, {}, {(BASE + kvm_trace.INTERRUPT_STATUS, kvm_trace.MMIO_READ): 1000,
                 (BASE + kvm_trace.INTERRUPT_ACK, kvm_trace.MMIO_WRITE): 1000},
        {(kvm_trace.EXIT_TRAP, 0x24): 2500, (kvm_trace.EXIT_TRAP, 0x01): 1200,
         (kvm_trace.EXIT_IRQ, 0): 300},
        {(6,): 2100, (10,): 4})
    return wiring, counters


def test_a_single_line_interrupt_costs_its_status_and_ack_exits_and_an_injection():
    wiring, counters = single_line_run(injected=1000)
    c = cost.of_run("single", wiring, counters, [BASE], BEFORE, AFTER, transactions=500,
                    ticks_per_s=100)
    assert c.queue_interrupts == 1000 and c.injections == 1000 and c.status_ack_exits == 2000
    assert c.exits == {"dabt": 2500, "wfx": 1200, "irq": 300}
    assert c.vmm_exits == {"mmio": 2100, "intr": 4}
    f = c.figures()
    assert f["exits_per_interrupt"] == 4.0 and f["exits_per_transaction"] == 8.0
    assert f["injections_per_interrupt"] == 1.0 and f["status_ack_exits_per_interrupt"] == 2.0
    assert f["interrupts_per_transaction"] == 2.0
    # Outside the guest: main loop 30 + 10; vCPU 100 + 20 - 60 of guest time; vhost, new: 30.
    assert c.vmm_ticks == {"vmm": 40, "vcpu": 60, "vhost": 30}
    assert f["vmm_us_per_transaction"] == 130 * 10_000 / 500


def test_msix_has_no_line_to_inject_and_no_status_register():
    wiring = Wiring(None, {"config": "MSI", "input.0": "MSI", "output.0": "MSI"},
                    {"config": 0, "input.0": 700, "output.0": 300}, {})
    _, counters = single_line_run(0)
    c = cost.of_run("msi-x", wiring, counters, [], BEFORE, AFTER, 500, 100)
    assert c.queue_interrupts == 1000
    assert c.injections is None and c.status_ack_exits is None
    assert c.figures()["injections_per_interrupt"] is None


def test_a_run_without_interrupts_or_transactions_has_no_per_unit_figures():
    wiring = Wiring("per-vq", {"config": "GIC-0", "input.0": "GIC-0", "output.0": "GIC-0"},
                    {"config": 0, "input.0": 0, "output.0": 0}, {})
    _, counters = single_line_run(0)
    c = cost.of_run("per-vq", wiring, counters, [BASE], BEFORE, AFTER, 0, 100)
    assert c.exits_per_interrupt is None and c.vmm_us_per_transaction is None
    assert c.exits_per_transaction_by_reason() == {}
