"""Commands on a board or guest: output and exit status, and a clear error when they fail."""

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass
from typing import Any

from pexpect import TIMEOUT

from hil.errors import CommandFailed, ShellTimeout


@dataclass(frozen=True)
class Result:
    command: str
    output: str
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 0


class Shell:
    """A shell on one side of the lab (`board` or `guest`), over a labgrid CommandProtocol."""

    def __init__(self, where: str, command: Any) -> None:
        self.where = where
        self._command = command

    def run(self, command: str, timeout: float = 60.0) -> Result:
        """Run and return output and status, whatever the status."""
        try:
            out, _err, status = self._command.run(command, timeout=timeout)
        except TIMEOUT:
            raise ShellTimeout(self.where, command, timeout) from None
        return Result(command, "\n".join(out), int(status))

    def check(self, command: str, timeout: float = 60.0) -> str:
        """Run and return the output; a non-zero status raises CommandFailed."""
        r = self.run(command, timeout)
        if not r.ok:
            raise CommandFailed(self.where, command, r.status, r.output)
        return r.output

    def poll(self, command: str, timeout: float = 60.0) -> bool:
        """Run `command` once a second until it succeeds (labgrid's poll_until_success):
        whether it did within `timeout`."""
        return bool(self._command.poll_until_success(command, timeout=float(timeout),
                                                     sleepduration=1))

    def read(self, path: str) -> str:
        return self.check(f"cat {path}")

    def read_bytes(self, path: str) -> bytes:
        """A binary file, compressed and base64-encoded for the trip over the console (a file
        that is not there fails the command: the pipe's status is base64's)."""
        return gzip.decompress(base64.b64decode(
            self.check(f"test -r {path} && gzip -c {path} | base64")))

    def read_compressed(self, path: str) -> str:
        """A text file too long for a slow console (a nested guest's carries about a kilobyte a
        second): gzip and base64 make iperf3's JSON about a third of its size on the way."""
        return self.read_bytes(path).decode()

    def write_bytes(self, path: str, data: bytes, chunk: int = 512) -> None:
        """Write a binary file through the console, in lines the shell's editor accepts."""
        text = base64.b64encode(gzip.compress(data)).decode()
        self.check(f"rm -f {path}.b64")
        for i in range(0, len(text), chunk):
            self.check(f"echo -n '{text[i:i + chunk]}' >> {path}.b64")
        self.check(f"base64 -d {path}.b64 | gunzip > {path} && rm {path}.b64")
        digest = self.check(f"md5sum {path}").split()[0]
        if digest != hashlib.md5(data).hexdigest():
            raise CommandFailed(self.where, f"write {path}", 1, "content differs after upload")

    def __repr__(self) -> str:
        return f"Shell({self.where})"
