"""Free TCP ports of this host, for the services a lab starts on loopback or its address,
claims on fixed ports between processes, and whether an address is one of this host's."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from hil.errors import InfrastructureError

CLAIMS = Path(tempfile.gettempdir()) / "hil-port-claims"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class PortPool:
    """Free ports for the services of one lab, never the same one twice. Two free_port() calls
    in a row can return the same port (the kernel may hand a just-closed one out again): a lab
    once gave its coordinator the port its sshd then held."""

    def __init__(self, pick: Callable[[str], int] = free_port):
        self._pick = pick
        self._given: set[int] = set()

    def take(self, address: str = "127.0.0.1") -> int:
        for _ in range(64):
            port = self._pick(address)
            if port not in self._given:
                self._given.add(port)
                return port
        raise OSError(f"no free port on {address} other than {sorted(self._given)}")


class Claim:
    """One process's hold on a port number of this host (a lock the kernel drops with the
    process). A port a program binds itself (QEMU's chardevs) can be checked free and still be
    taken by another session between the check and the bind: two sessions that claim it
    first cannot both pass."""

    def __init__(self, port: int, holder: str, where: Path | None = None):
        where = where or CLAIMS
        if not where.is_dir():
            where.mkdir(parents=True, exist_ok=True)
            # As /tmp: every user's sessions claim ports here (PermissionError: another user
            # made it at the same moment).
            with contextlib.suppress(PermissionError):
                where.chmod(0o1777)
        try:
            fd = os.open(where / str(port), os.O_RDWR | os.O_CREAT, 0o644)
            writable = True
        except PermissionError:  # another user's claim file: locking needs no write access
            fd, writable = os.open(where / str(port), os.O_RDONLY), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 256).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InfrastructureError(
                f"port {port} is claimed by {other} on this host: stop it, or give this "
                "one other ports in its env file") from None
        if writable:
            os.ftruncate(fd, 0)
            os.write(fd, f"{holder} (pid {os.getpid()})".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


def is_local_address(address: str) -> bool:
    """Whether `address` is one of this host's (only then can a socket bind it)."""
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True
