"""Error classes that tell infrastructure failures apart from product failures.

An InfrastructureError means the lab could not do its job (a missing artefact, a broken
environment file, a board that never reached its prompt); a ProductFailure means the stack
under test misbehaved. Reports count them separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hil.measure.kernel_log import Finding


class HilError(Exception):
    """Base class: the message says what to fix."""


class InfrastructureError(HilError):
    """The lab, not the product, failed: fix the set-up and run again."""


class ConfigError(InfrastructureError):
    """An environment file or recipe is missing or malformed."""


class ArtifactMissing(InfrastructureError):
    """A binary, image or tool that a board needs is not where the environment says."""


class BootTimeout(InfrastructureError):
    """A board or guest did not reach its prompt; the console log is kept on disk."""


class ShellTimeout(InfrastructureError):
    """A command on a board or guest shell did not come back in time.

    Infrastructure unless the guest stopped answering while its board still answers (see
    hil/verdict.py); either way the console is out of sync and the board is power-cycled
    before the next case.
    """

    def __init__(self, where: str, command: str, timeout: float) -> None:
        self.where = where
        self.command = command
        self.timeout = timeout
        super().__init__(f"{where}: `{command}` did not finish within {timeout:.0f} s")


class ProductFailure(HilError):
    """The stack under test (kernel, VMM, board) did something wrong."""


class CommandFailed(ProductFailure):
    """A command on a board or guest exited non-zero."""

    def __init__(self, where: str, command: str, status: int, output: str) -> None:
        self.where = where
        self.command = command
        self.status = status
        self.output = output
        tail = "\n".join(output.splitlines()[-20:])
        super().__init__(f"{where}: `{command}` exited with status {status}\n{tail}")


class KernelLogFindings(ProductFailure):
    """The kernel of the board or the guest reported trouble (WARN, BUG, Oops, lockdep, ...)
    while a testcase ran: `findings` maps each side to what its log said."""

    MAX_SHOWN = 5  # per side: one report usually brings others, the first ones tell most

    def __init__(self, findings: Mapping[str, Sequence[Finding]]) -> None:
        self.findings = {side: list(found) for side, found in findings.items() if found}
        parts = []
        for side, found in self.findings.items():
            kinds = ", ".join(sorted({f.kind for f in found}))
            parts.append(f"{side} kernel: {len(found)} report(s) ({kinds})")
            for f in found[:self.MAX_SHOWN]:
                parts.append("\n".join(f"    {line}" for line in str(f).splitlines()))
            if len(found) > self.MAX_SHOWN:
                parts.append(f"    ... and {len(found) - self.MAX_SHOWN} more")
        super().__init__("\n".join(parts))
