"""The strategy and shells as a test author uses them, on the virtual lab."""

import pytest

from hil.errors import CommandFailed


def test_commands_return_output_and_status_on_both_sides(lab_env):
    lab_env.transition("guest")
    board, guest = lab_env.shell("board"), lab_env.shell("guest")
    r = board.run("echo out; echo err >&2; exit 3")
    assert (r.output.splitlines(), r.status, r.ok) == (["out", "err"], 3, False)
    assert guest.check("hostname") == "hil-guest"
    assert board.check("hostname") == "hil-board"
    with pytest.raises(CommandFailed, match=r"guest: `cat /nonexistent` exited with status 1"):
        guest.check("cat /nonexistent")
    # Board and guest are usable side by side: the guest state keeps the board's shell.
    lab_env.ensure("board")
    assert lab_env.path == ["off", "board", "guest"]


def test_guest_restarts_with_another_vmm_configuration(lab_env):
    lab_env.transition("guest")
    cfg = lab_env.boot_guest(vhost=False, cpus=2)
    guest = lab_env.shell("guest")
    assert guest.check("grep -c ^processor /proc/cpuinfo") == "2"
    board = lab_env.shell("board")
    cmdline = board.check("tr '\\0' ' ' < /proc/$(cat /run/hil-vmm.pid)/cmdline")
    assert "vhost=off" in cmdline and not cfg.vhost
    # The VMM's monitor answers on the board.
    assert "VM status: running" in lab_env.vmm.monitor("info status")
