"""Kernel messages of a board or guest since the last look, and the reports of trouble in them.

Meant to run after every qualification testcase, on each side that is up:

    found = {s.where: kernel_logs.check_since_last(s, allow) for s in (board, guest)}
    kernel_logs.raise_on_findings(found)   # KernelLogFindings (a ProductFailure) if any

`allow` holds regular expressions for reports a testcase provokes on purpose (the fallback
case's `genirq: Flags mismatch`). The first look after a boot covers the whole boot. Where
the messages of the previous look ended is a mark in the kernel's own log (see
kernel_log.mark_command), so Shell objects may come and go and the ring buffer is never
cleared. A guest that is restarted before the look takes its messages with it: look before
restarting it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from hil.errors import InfrastructureError, KernelLogFindings
from hil.labgrid.shell import Shell
from hil.measure import kernel_log
from hil.measure.kernel_log import Finding


def new_messages(shell: Shell) -> str:
    """The kernel messages that appeared since the previous call on this side."""
    token = secrets.token_hex(6)
    r = shell.run(kernel_log.mark_command(token))
    if r.status == kernel_log.NOT_FOUND:  # not an image hil built: the look typed in whole
        r = shell.run(kernel_log.inline_mark_command(token))
    text = kernel_log.since_mark(r.output, token) if r.ok else None
    if text is None:
        raise InfrastructureError(f"{shell.where}: cannot mark and read the kernel log "
                                  f"(status {r.status}):\n{r.output[-2000:]}")
    return text


def check_since_last(shell: Shell, allow: Sequence[str] = ()) -> list[Finding]:
    """The reports of kernel trouble since the previous call, less those `allow` matches."""
    return kernel_log.unexpected(kernel_log.scan(new_messages(shell)), allow)


def raise_on_findings(findings: Mapping[str, Sequence[Finding]]) -> None:
    """KernelLogFindings listing each side's reports, if there are any."""
    if any(findings.values()):
        raise KernelLogFindings(findings)
