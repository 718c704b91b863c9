"""Commands over the lab-host VM's serial console: a shell with echo off, each command framed
by markers that carry its exit code."""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from labgrid.util import Timeout

from hil.errors import InfrastructureError


@dataclass(frozen=True)
class Result:
    command: str
    rc: int
    output: str

    def check(self) -> Result:
        if self.rc != 0:
            raise InfrastructureError(
                f"lab-host VM: `{self.command}` exited {self.rc}:\n{self.output[-3000:]}")
        return self


class Console:
    """A unix-socket serial console (QEMU `-chardev socket,server=on`)."""

    def __init__(self, path: Path, connect_timeout: float = 30.0) -> None:
        self.path = path
        self.buf = b""
        deadline = Timeout(float(connect_timeout))
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                break
            except OSError as e:
                s.close()
                if deadline.expired:
                    raise InfrastructureError(f"lab-host VM console {path}: {e}") from e
                time.sleep(0.1)
        self.sock = s

    def close(self) -> None:
        self.sock.close()

    def _fill(self, deadline: Timeout) -> None:
        left = deadline.remaining
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(min(left, 1.0))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise InfrastructureError("lab-host VM console closed (did QEMU exit?)")
        self.buf += data

    def expect(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        """Wait for `pattern` in what the console sends; consume up to the end of the match."""
        rx = re.compile(pattern)
        deadline = Timeout(float(timeout))
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            try:
                self._fill(deadline)
            except TimeoutError:
                tail = self.buf[-2000:].decode(errors="replace")
                raise InfrastructureError(
                    f"lab-host VM console: no {pattern!r} within {timeout:.0f} s; last output:\n"
                    f"{tail}") from None

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def run(self, command: str, timeout: float = 120.0) -> Result:
        """Run one line of shell in a subshell (stdin /dev/null, stderr into stdout)."""
        if "\n" in command:
            raise ValueError("one line of shell only")
        tag = secrets.token_hex(4)
        # The quotes split the markers as typed, so an echo of the line could never match.
        self.send(f"echo HIL_B''EGIN_{tag}; ( {command} ) </dev/null 2>&1; "
                  f"echo HIL_E''ND_{tag}=$?\n")
        self.expect(rf"HIL_BEGIN_{tag}\r?\n".encode(), timeout)
        m = self.expect(rf"(?s)(.*?)HIL_END_{tag}=(\d+)\r?\n".encode(), timeout)
        output = m[1].decode(errors="replace").replace("\r\n", "\n")
        return Result(command, int(m[2]), output)
