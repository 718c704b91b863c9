"""One virtual lab per host: a lock that the lab's supervisor holds for its whole life.

Two labs on one host would share what only one can have: the boards' network address (where
U-Boot asks for TFTP) and the system ssh's entry for the exporter's address, where the first
drop-in that names a host wins, so the second lab's ssh reaches the first lab's sshd. The
kernel drops a flock when its holder ends, however it ends: a killed lab never leaves the lock
behind, as a pid file would.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from labgrid.util import Timeout

from hil.errors import ConfigError

LOCK_PATH = Path("/run/hil-virtual-lab.lock")


@dataclass(frozen=True)
class Holder:
    pid: int
    directory: str

    def problem(self) -> str:
        return (f"another virtual lab runs on this host, from {self.directory} (pid "
                f"{self.pid}); one host has one: `hil lab down --dir {self.directory}` first")


def _parse(text: str) -> Holder:
    pid, _, directory = text.strip().partition(" ")
    return Holder(int(pid) if pid.isdigit() else 0, directory or "an unknown directory")


def holder(path: Path | None = None) -> Holder | None:
    """The lab that holds the lock, or None. Asking takes the lock for an instant when nobody
    holds it; `HostLock.acquire` waits out such an instant."""
    path = path or LOCK_PATH
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class HostLock:
    """Held by a lab's supervisor from before it touches anything host-wide until it ends."""

    def __init__(self, path: Path | None = None):
        self.path = path or LOCK_PATH
        self.fd: int | None = None

    def acquire(self, directory: Path, wait: float = 2.0) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = Timeout(wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline.expired:
                    text = os.pread(fd, 4096, 0).decode(errors="replace")
                    os.close(fd)
                    raise ConfigError(_parse(text).problem()) from None
                time.sleep(0.05)  # a holder() that is only asking lets go at once
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {directory}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the flock
            self.fd = None
