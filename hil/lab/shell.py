"""Commands on a board or guest: output and exit status, and a clear error when they fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hil.errors import CommandFailed


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
        out, _err, status = self._command.run(command, timeout=timeout)
        return Result(command, "\n".join(out), int(status))

    def check(self, command: str, timeout: float = 60.0) -> str:
        """Run and return the output; a non-zero status raises CommandFailed."""
        r = self.run(command, timeout)
        if not r.ok:
            raise CommandFailed(self.where, command, r.status, r.output)
        return r.output

    def read(self, path: str) -> str:
        return self.check(f"cat {path}")

    def __repr__(self) -> str:
        return f"Shell({self.where})"
