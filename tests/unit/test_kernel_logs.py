"""Kernel messages since the last look: the mark in the log, and the failure it leads to."""

import re
from pathlib import Path

import pytest

from hil.errors import InfrastructureError, KernelLogFindings, ProductFailure
from hil.labgrid import kernel_logs
from hil.labgrid.shell import Shell
from hil.measure import kernel_log


class FakeKernel:
    """A labgrid CommandProtocol whose kernel log grows; it answers the mark command with
    the whole log (the real one trims it with awk, which since_mark does not rely on).
    `program`: whether its image has hil's program for the look."""

    def __init__(self, lines: list[str], writable: bool = True, program: bool = True) -> None:
        self.log = list(lines)
        self.writable = writable
        self.program = program
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60.0) -> tuple[list[str], list[str], int]:
        self.commands.append(command)
        m = re.fullmatch(r"(hil-kmsg-mark \S+)", command)
        if m and not self.program:
            return ["sh: hil-kmsg-mark: not found"], [], 127
        m = m or re.match(r'echo "<7>(hil-kmsg-mark \S+)" > /dev/kmsg', command)
        assert m, command
        if not self.writable:
            return ["sh: can't create /dev/kmsg: Permission denied"], [], 1
        self.log.append(f"[{100 + len(self.log):12.6f}] {m[1]}")
        return list(self.log), [], 0


def test_mark_command_writes_at_debug_level_and_never_clears() -> None:
    cmd = kernel_log.inline_mark_command("0123abcd")
    assert cmd.startswith('echo "<7>hil-kmsg-mark 0123abcd" > /dev/kmsg && dmesg | awk ')
    assert "dmesg -c" not in cmd


def test_the_images_program_is_the_inline_look_for_its_argument(tmp_path: Path) -> None:
    import subprocess

    assert kernel_log.mark_command("0123abcd") == "hil-kmsg-mark 0123abcd"
    text = kernel_log.script()
    assert text.startswith("#!/bin/sh\n") and kernel_log.SCRIPT_PATH.endswith("/hil-kmsg-mark")
    *_, look = text.splitlines()
    assert look.replace("$1", "0123abcd") == kernel_log.inline_mark_command("0123abcd")
    (tmp_path / "look").write_text(text)
    subprocess.run(["sh", "-n", str(tmp_path / "look")], check=True)  # valid shell


def test_a_shell_without_the_program_gets_the_look_typed_in_whole(data: Path) -> None:
    boot = (data / "board-dmesg.txt").read_text().splitlines()
    kernel = FakeKernel(boot, program=False)
    assert kernel_logs.new_messages(Shell("board", kernel)).splitlines() == boot
    assert [c.split()[0] for c in kernel.commands] == ["hil-kmsg-mark", "echo"]


def test_since_mark_takes_what_lies_between_the_marks() -> None:
    text = "\n".join([
        "[    0.000000] Booting Linux", "[    1.0] hil-kmsg-mark aaa", "[    2.0] old",
        "[    3.0] hil-kmsg-mark bbb", "[    4.0] new 1", "[    5.0] new 2",
        "[    6.0] hil-kmsg-mark ccc", "[    7.0] after the mark: next time",
    ])
    assert kernel_log.since_mark(text, "ccc") == "[    4.0] new 1\n[    5.0] new 2\n"
    assert kernel_log.since_mark(text, "bbb") == "[    2.0] old\n"
    assert kernel_log.since_mark(text, "aaa") == "[    0.000000] Booting Linux\n"
    assert kernel_log.since_mark(text, "zzz") is None


def test_since_mark_without_timestamps_and_with_carriage_returns() -> None:
    text = ("Booting Linux\r\nhil-kmsg-mark a1\r\nWARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x4\r\n"
            "hil-kmsg-mark b2\r\n")
    assert kernel_log.since_mark(text, "b2") == "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x4\n"


def test_a_message_quoting_a_mark_is_no_mark() -> None:
    text = "hil-kmsg-mark a1\nsh: hil-kmsg-mark x1 y\nnew\nhil-kmsg-mark b2\n"
    assert kernel_log.since_mark(text, "b2") == "sh: hil-kmsg-mark x1 y\nnew\n"


def test_each_look_returns_only_what_is_new(data: Path) -> None:
    boot = (data / "board-dmesg.txt").read_text().splitlines()
    kernel = FakeKernel(boot)
    first = kernel_logs.new_messages(Shell("board", kernel))
    assert first.splitlines() == boot  # the first look covers the boot
    assert kernel_logs.new_messages(Shell("board", kernel)) == ""  # a new Shell: same place
    kernel.log.append("[  200.000000] virtio_net virtio1 eth0: link up")
    assert kernel_logs.new_messages(Shell("board", kernel)) == (
        "[  200.000000] virtio_net virtio1 eth0: link up\n")


def test_a_report_is_found_once(data: Path) -> None:
    kernel = FakeKernel((data / "board-dmesg.txt").read_text().splitlines())
    guest = Shell("guest", kernel)
    assert kernel_logs.check_since_last(guest) == []
    kernel.log += (data / "guest-dmesg-warn.txt").read_text().splitlines()
    (warn,) = kernel_logs.check_since_last(guest)
    assert warn.kind == "warn"
    assert kernel_logs.check_since_last(guest) == []


def test_allowed_reports_do_not_count(data: Path) -> None:
    kernel = FakeKernel((data / "board-dmesg-splats.txt").read_text().splitlines())
    found = kernel_logs.check_since_last(Shell("board", kernel), allow=["^genirq: Flags mismatch"])
    assert "genirq-flags-mismatch" not in {f.kind for f in found}
    assert len(found) == 7


def test_a_log_that_cannot_be_marked_is_the_labs_problem() -> None:
    with pytest.raises(InfrastructureError, match="guest: cannot mark"):
        kernel_logs.new_messages(Shell("guest", FakeKernel([], writable=False)))


def test_findings_fail_as_a_product_failure_naming_each_side(data: Path) -> None:
    board = kernel_log.scan((data / "board-dmesg-splats.txt").read_text())
    guest = kernel_log.scan((data / "guest-dmesg-warn.txt").read_text())
    kernel_logs.raise_on_findings({"board": [], "guest": []})
    with pytest.raises(KernelLogFindings) as e:
        kernel_logs.raise_on_findings({"board": board, "guest": guest})
    assert isinstance(e.value, ProductFailure)
    text = str(e.value)
    assert "board kernel: 8 report(s) (bug, genirq-flags-mismatch, hung-task, irq-nobody-cared" in text
    assert "guest kernel: 1 report(s) (warn)" in text
    assert "    Trying to free already-free IRQ 47" in text
    assert "... and 3 more" in text
    assert set(e.value.findings) == {"board", "guest"}


def _on_the_board(log: list[str], token: str) -> str:
    """The mark command's awk, run by this machine's awk on `log` plus the new mark."""
    import subprocess

    awk = kernel_log.inline_mark_command(token).split("dmesg | ", 1)[1]
    text = "\n".join([*log, f"[  999.000000] hil-kmsg-mark {token}"]) + "\n"
    return subprocess.run(["sh", "-c", awk], input=text, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("sample", ["board-dmesg-splats.txt", "guest-dmesg-warn.txt",
                                    "guest-dmesg-oops.txt"])
def test_the_board_sends_a_region_with_a_report_whole(data: Path, sample: str) -> None:
    before = ["[    1.000000] Booting Linux", "[    2.000000] hil-kmsg-mark aaa"]
    region = (data / sample).read_text().splitlines()
    out = _on_the_board([*before, *region], "bbb")
    assert kernel_log.scan(kernel_log.since_mark(out, "bbb") or "") == \
        kernel_log.scan("\n".join(region))
    assert kernel_log.scan("\n".join(region))


def test_a_clean_region_costs_two_lines_over_the_console(data: Path) -> None:
    boot = (data / "board-dmesg.txt").read_text().splitlines()
    out = _on_the_board([*boot, "[  100.000000] hil-kmsg-mark aaa", "[  101.0] eth0: up"], "bbb")
    assert len(out.splitlines()) == 2 and kernel_log.since_mark(out, "bbb") == ""
    first = _on_the_board(boot, "aaa")  # the first look after a boot: no earlier mark
    assert len(first.splitlines()) == 1 and kernel_log.since_mark(first, "aaa") == ""


def test_every_report_kind_trips_the_trigger() -> None:
    openers = ["WARNING: possible circular locking dependency detected",
               "WARNING: CPU: 0 PID: 1 at drivers/virtio/virtio_mmio.c:1 f+0x0/0x4",
               "Internal error: Oops: 0000000096000004 [#1] SMP",
               "Unable to handle kernel NULL pointer dereference at virtual address 0",
               "Kernel panic - not syncing: Fatal exception",
               "BUG: sleeping function called from invalid context at mm/slub.c:1",
               "watchdog: BUG: soft lockup - CPU#0 stuck for 22s!",
               "kernel BUG at drivers/virtio/virtio_mmio.c:1!",
               "rcu: INFO: rcu_sched self-detected stall on CPU",
               "INFO: task sh:61 blocked for more than 120 seconds.",
               "irq 48: nobody cared (try booting with the \"irqpoll\" option)",
               "genirq: Flags mismatch irq 48. 00000000 (virtio1) vs. 00000000 (virtio0)"]
    kinds = {kernel_log.scan(line)[0].kind for line in openers}
    assert kinds == {kind for kind, _ in kernel_log.KINDS}
    assert all(re.search(kernel_log.TRIGGER, line) for line in openers)
