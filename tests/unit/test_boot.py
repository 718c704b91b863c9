import pytest

from hil.errors import BootTimeout
from hil.labgrid import boot


def test_ready_and_panic_are_recognised():
    assert boot.classify("...\nhil: board ready\n") is boot.BootState.READY
    assert boot.classify("Kernel panic - not syncing: Attempted to kill init!") is boot.BootState.PANIC
    assert boot.classify("[    1.0] virtio_blk virtio1: 1/0/0 default/read/poll queues") is None


def test_the_first_outcome_wins():
    assert boot.classify("Kernel panic - not syncing: x\nhil: guest ready") is boot.BootState.PANIC


class FakeConsole:
    """Stands in for a labgrid console: feeds fixed text to the real pattern matching."""

    def __init__(self, text: str) -> None:
        self.text = text

    def expect(self, patterns, timeout):
        import re

        from pexpect import TIMEOUT
        for i, p in enumerate(patterns):
            if p is TIMEOUT:
                return i, self.text.encode(), None, None
            m = re.search(p.encode(), self.text.encode())
            if m:
                return i, self.text[: m.start()].encode(), m, None
        raise AssertionError("unreachable")


def test_wait_raises_a_panic_with_the_console_tail():
    con = FakeConsole("booting\nKernel panic - not syncing: VFS: Unable to mount root\n")
    with pytest.raises(boot.BootFailed, match=r"board panicked.*Unable to mount root"):
        boot.wait_for_boot(con, "board", 5, "/tmp/log")


def test_wait_timeout_names_the_log():
    with pytest.raises(BootTimeout, match="guest did not reach its prompt within 5 s; console log: /x"):
        boot.wait_for_boot(FakeConsole("silence"), "guest", 5, "/x")
