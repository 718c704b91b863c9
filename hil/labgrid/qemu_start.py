"""The start of a board's QEMU under labgrid's QEMUDriver, watched.

QEMUDriver.on() starts QEMU, then waits in accept() for QEMU to connect its serial chardev,
with no timeout: a QEMU that exits first (a chardev's port taken, a bad option in the board's
extra_args) or never connects leaves the session waiting forever. StartWatch sees either and
connects to that socket itself, so accept() returns and labgrid's own check of the exited
process raises. A QEMU that exits after it connected (a bad -device: chardevs come first)
ends labgrid's wait by itself, at once; the watch leaves that start alone, or its connection
would wait in the socket's backlog for the next start to take it as QEMU's console.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence


def console_socket(args: Sequence[str]) -> str | None:
    """The unix socket path of the chardev behind QEMU's `-serial chardev:ID` (what labgrid
    listens on for the board's console), from QEMU's command line; None without one."""
    ids = [args[i + 1][len("chardev:"):] for i in range(len(args) - 1)
           if args[i] == "-serial" and args[i + 1].startswith("chardev:")]
    for i in range(len(args) - 1):
        if args[i] != "-chardev":
            continue
        kind, _, rest = args[i + 1].partition(",")
        opts = dict(p.partition("=")[::2] for p in rest.split(","))
        if kind == "socket" and opts.get("id") in ids and opts.get("path"):
            return opts["path"]
    return None


class StartWatch(threading.Thread):
    """Watches one start: `child()` returns the QEMU process once started (None before).

    If the process exits, or `timeout` seconds pass (QEMU is then killed: `timed_out`), and
    stop() is not called within `grace` seconds after, it connects to the console socket to
    end labgrid's wait."""

    def __init__(self, child: Callable[[], subprocess.Popen[bytes] | None], timeout: float,
                 grace: float = 2.0, interval: float = 0.05):
        super().__init__(name="qemu-start-watch", daemon=True)
        self._child = child
        self._timeout = timeout
        self._grace = grace
        self._interval = interval
        self._done = threading.Event()
        self.timed_out = False

    def stop(self) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        deadline = time.monotonic() + self._timeout
        while not self._done.wait(self._interval):
            child = self._child()
            if child is None:
                continue
            if time.monotonic() > deadline and not self.timed_out:
                self.timed_out = True
                child.kill()
            if child.poll() is None:
                continue
            if self._done.wait(self._grace):
                return  # labgrid saw the exit itself: it was past accept()
            args = child.args
            path = console_socket([str(a) for a in args] if isinstance(args, list) else [])
            if path is not None:
                # OSError: labgrid no longer listens, its wait has ended anyway.
                with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
                    s.connect(path)
            return
