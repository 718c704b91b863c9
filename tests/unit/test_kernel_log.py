import pytest

from hil.measure import kernel_log


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


def _scan(data, name):
    return kernel_log.scan((data / name).read_text())


def test_clean_board_boot_has_no_findings(data):
    assert kernel_log.scan((data / "board-dmesg.txt").read_text()) == []


def test_every_kind_of_report_on_the_board_and_nothing_benign(data):
    found = _scan(data, "board-dmesg-splats.txt")
    assert [(f.kind, f.line.split(" at ")[0][:40]) for f in found] == [
        ("bug", "BUG: sleeping function called from inval"),
        ("lockdep", "WARNING: possible circular locking depen"),
        ("rcu-stall", "rcu: INFO: rcu_preempt detected stalls o"),
        ("hung-task", "INFO: task kworker/u8:2:58 blocked for m"),
        ("irq-nobody-cared", "irq 47: nobody cared (try booting with t"),
        ("genirq-flags-mismatch", "genirq: Flags mismatch irq 48. 00000000 "),
        ("bug", "watchdog: BUG: soft lockup - CPU#1 stuck"),
        ("bug", "kernel BUG"),
    ]
    # The kernel command line, a lowercase "warning", a generic WARNING and BUG_ON in a
    # message are not reports.
    assert not any("command line" in f.line or "mand mount" in f.line for f in found)


def test_context_has_no_timestamps_and_stops_at_the_end_of_the_trace(data):
    found = _scan(data, "board-dmesg-splats.txt")
    sleeping = found[0]
    assert len(sleeping.context) == 1 + kernel_log.CONTEXT_LINES
    assert sleeping.context[1].startswith("in_atomic(): 1, irqs_disabled(): 128")
    assert not any(line.startswith("[") for line in sleeping.context)
    bug = found[-1]
    assert bug.context[0] == "kernel BUG at drivers/vhost/vhost.c:2730!"
    assert bug.context[1].startswith("Internal error: Oops - BUG")
    assert bug.context[-1] == "---[ end trace 0000000000000000 ]---"


def test_warn_shows_its_message_and_call_trace_not_registers(data):
    (warn,) = _scan(data, "guest-dmesg-warn.txt")
    assert warn.kind == "warn"
    assert warn.line == "WARNING: CPU: 1 PID: 88 at kernel/irq/manage.c:1963 free_irq+0x2f4/0x368"
    assert warn.context[:2] == ("------------[ cut here ]------------", "Trying to free already-free IRQ 47")
    assert " free_irq+0x2f4/0x368" in warn.context  # indentation kept
    assert not any(line.startswith("x29:") for line in warn.context)


def test_one_oops_is_one_finding_with_its_follow_ups(data):
    (oops,) = _scan(data, "guest-dmesg-oops.txt")
    assert oops.kind == "oops"
    assert oops.line.startswith("Unable to handle kernel NULL pointer dereference")
    assert "Internal error: Oops: 0000000096000006 [#1] SMP" in oops.context
    assert oops.context[-1] == "Kernel panic - not syncing: Oops: Fatal exception in interrupt"


def test_carriage_returns_and_caller_ids_do_not_matter(data):
    text = (data / "guest-dmesg-warn.txt").read_text().replace("\n", "\r\n")
    assert [f.line for f in kernel_log.scan(text)] == [
        "WARNING: CPU: 1 PID: 88 at kernel/irq/manage.c:1963 free_irq+0x2f4/0x368"]
    raw = ("<4>[  245.118854][  T412] WARNING: CPU: 1 PID: 412 at kernel/irq/manage.c:1963 "
           "free_irq+0x2f4/0x368\r")
    assert kernel_log.scan(raw)[0].line.startswith("WARNING: CPU: 1 PID: 412 at")


@pytest.mark.parametrize("line, kind", [
    ("BUG: KASAN: slab-use-after-free in vring_interrupt+0x2c/0xc0", "bug"),
    ("BUG: scheduling while atomic: swapper/0/0/0x00000102", "bug"),
    ("WARNING: possible recursive locking detected", "lockdep"),
    ("WARNING: inconsistent lock state", "lockdep"),
    ("WARNING: suspicious RCU usage", "lockdep"),
    ("rcu: INFO: rcu_sched self-detected stall on CPU", "rcu-stall"),
    ("INFO: task qemu-system-aar:611 blocked for more than 122 seconds.", "hung-task"),
    ("Unable to handle kernel paging request at virtual address ffff800082a4e010", "oops"),
    ("Internal error: Oops: 0000000096000004 [#1] PREEMPT SMP", "oops"),
])
def test_report_kinds(line, kind):
    assert [f.kind for f in kernel_log.scan(f"[   12.345678] {line}\n")] == [kind]


@pytest.mark.parametrize("line", [
    "Kernel command line: console=ttyAMA0 BUG: WARNING: CPU: 0 PID: 1 at x",
    "virtio_net virtio1: warning: cannot do X",
    "WARNING: The mand mount option has been deprecated and",
    "hil: BUG_ON(irq < 0) never fires",
    "ACPI BIOS Warning (bug): 32/64X length mismatch",
    "rcu: INFO: lots of detail",
    "printk: genirq: Flags mismatch",
])
def test_benign_lines(line):
    assert kernel_log.scan(f"[    0.100000] {line}\n") == []


def test_allowed_reports_are_left_out(data):
    found = _scan(data, "board-dmesg-splats.txt")
    left = kernel_log.unexpected(found, allow=[r"^genirq: Flags mismatch irq \d+"])
    assert len(left) == len(found) - 1
    assert all(f.kind != "genirq-flags-mismatch" for f in left)
