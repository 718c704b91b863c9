"""Kernel messages: what a board says about virtualization (EL2, KVM mode, the GIC), and
reports of kernel trouble (WARN, BUG, Oops, lockdep, stalls) anywhere in a log."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class VirtStatus:
    booted_at_el2: bool
    kvm_mode: str | None  # "VHE", "nVHE", "protected", or None when KVM did not initialise
    gic_version: int | None
    vgic_maintenance_irq: int | None


def parse_dmesg(text: str) -> VirtStatus:
    el2 = "CPU: All CPU(s) started at EL2" in text
    mode = None
    # "Hyp nVHE mode ..." contains "VHE mode ...": test for the nVHE forms first.
    if m := re.search(r"Hyp (nVHE|protected) mode initialized successfully", text):
        mode = m[1]
    elif "VHE mode initialized successfully" in text:
        mode = "VHE"
    gic = None
    if re.search(r"\bGICv3\b|GIC: enabling workaround for GICv3", text):
        gic = 3
    elif re.search(r"GIC: Using split EOI/Deactivate mode|GICv2m:|\bGIC-400\b", text):
        gic = 2
    m = re.search(r"kvm \[\d+\]: vgic interrupt IRQ(\d+)", text)
    return VirtStatus(el2, mode, gic, int(m[1]) if m else None)


# --- reports of kernel trouble ----------------------------------------------------------------

# What a kernel prints before its own message text: the syslog level (`dmesg -r`), the
# CONFIG_PRINTK_TIME timestamp and the CONFIG_PRINTK_CALLER id, e.g. `<4>[   12.345678][  T1] `.
# The board's Debian kernel has timestamps, the guest's allnoconfig kernel has none.
# Only the space after the prefix goes: the call trace's indentation stays.
_PREFIX = re.compile(r"^(?:<\d+>)?(?:\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])? ?)?")

# Each kind of report and the line that opens it. Every pattern is anchored at the start of
# the message: the kernel prints these at the start, while a driver saying "warning", a
# kernel command line or a message quoting BUG_ON() has them, if at all, further in.
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("lockdep", re.compile(
        r"^WARNING: (?:possible circular locking dependency detected"
        r"|possible recursive locking detected|inconsistent lock state|suspicious RCU usage"
        r"|possible irq lock inversion dependency detected|bad unlock balance detected"
        r"|\S+-safe -> \S+-unsafe lock order detected)")),
    ("warn", re.compile(r"^WARNING: (?:CPU: \d+ PID: \d+ )?at \S")),
    ("oops", re.compile(r"^(?:Internal error: Oops|Unable to handle kernel \w"
                        r"|Kernel panic - not syncing)")),
    ("bug", re.compile(r"^(?:(?:watchdog: )?BUG: \S|kernel BUG at \S)")),
    ("rcu-stall", re.compile(
        r"^(?:rcu: )?INFO: rcu_\w+ (?:self-detected stall|detected (?:expedited )?stalls)")),
    ("hung-task", re.compile(r"^INFO: task \S.* blocked for more than \d+ seconds")),
    ("irq-nobody-cared", re.compile(r"^irq \d+: nobody cared")),
    ("genirq-flags-mismatch", re.compile(r"^genirq: Flags mismatch irq \d+")),
)
# An oops continues a report that began shortly before: `Unable to handle kernel ...` or
# `kernel BUG at ...` come first, then `Internal error: Oops`, then maybe the panic.
_FOLLOW_UP = re.compile(r"^(?:Internal error: Oops|Kernel panic - not syncing)")
_END = re.compile(r"^---\[ end (?:trace|Kernel panic)")
_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_CUT_HERE_WINDOW = 5
CONTEXT_LINES = 10
# How far after an oops-like report its `Internal error: Oops` line may come (arm64 decodes
# the abort in between), and the panic after that (registers and call trace in between).
_FOLLOW_UP_WINDOW = 80
# arm64's register dump (`x29: ffff80008033bb40 x28: ...`): the context shows the call trace
# instead, which says more about the culprit.
_REGISTERS = re.compile(r"^(?:x\d+\s*: [0-9a-f]{16}\s*)+$")


@dataclass(frozen=True)
class Finding:
    """One report of kernel trouble: its kind, the line that opened it, and what followed."""

    kind: str  # one of the names in KINDS
    line: str  # the opening line without timestamp
    # Without timestamps: the opening line and up to CONTEXT_LINES more (up to the end of
    # trace marker), after the `[ cut here ]` marker and the WARN's message for a WARN.
    context: tuple[str, ...]

    def __str__(self) -> str:
        return "\n".join(self.context)


def message(line: str) -> str:
    """A kernel log line without its level, timestamp, caller id or trailing space."""
    return _PREFIX.sub("", line, count=1).rstrip()


def _kind(msg: str) -> str | None:
    for kind, pattern in KINDS:
        if pattern.match(msg):
            return kind
    return None


def scan(text: str, context_lines: int = CONTEXT_LINES) -> list[Finding]:
    """Every WARN, BUG, Oops, lockdep report, RCU stall, hung task, unhandled interrupt and
    request_irq flags mismatch in kernel log text (dmesg or a serial console, CR or not)."""
    msgs = [message(ln) for ln in text.splitlines()]
    findings: list[Finding] = []
    oops_at = None  # where the last oops-like report began: its follow-up lines belong to it
    for i, msg in enumerate(msgs):
        kind = _kind(msg)
        if kind is None:
            continue
        if _FOLLOW_UP.match(msg) and oops_at is not None and i - oops_at <= _FOLLOW_UP_WINDOW:
            # Part of the report before: its line joins that context, it is no report itself.
            last = findings[-1]
            if msg not in last.context:
                findings[-1] = replace(last, context=(*last.context, "...", msg))
            oops_at = i
            continue
        # A WARN's own message comes between `[ cut here ]` and the WARNING line.
        start = i
        while (kind == "warn" and start > 0 and i - start < _CUT_HERE_WINDOW
               and not _CUT_HERE.match(msgs[start])):
            start -= 1
        if not _CUT_HERE.match(msgs[start]):
            start = i
        context: list[str] = msgs[start:i]
        shown = 0
        for m in msgs[i:]:
            if shown > context_lines:
                break
            if _REGISTERS.match(m):
                continue
            context.append(m)
            shown += 1
            if _END.match(m):
                break
        findings.append(Finding(kind, msg, tuple(context)))
        if kind in ("oops", "bug"):
            oops_at = i
    return findings


def unexpected(findings: list[Finding], allow: Sequence[str] = ()) -> list[Finding]:
    """The findings that no `allow` regular expression matches (searched in the opening
    line): a testcase that provokes a report on purpose names it here."""
    patterns = [re.compile(a) for a in allow]
    return [f for f in findings if not any(p.search(f.line) for p in patterns)]


# --- messages since the last look ---------------------------------------------------------------

# A line written to /dev/kmsg before each look: the messages since the last look are those
# between the mark before it and this one, so nothing is cleared and no state is kept here.
MARK = "hil-kmsg-mark"
_MARK = re.compile(rf"^{MARK} (\S+)$")


# What every opening line in KINDS contains (checked by a unit test against KINDS): the board
# prints the region since the last mark only if a line of it matches, so that a clean look
# costs two lines over a console where, in the nested guest, each character is a VM exit.
TRIGGER = ("WARNING: |BUG: |BUG at |Oops|Unable to handle kernel|Kernel panic|INFO: rcu_"
           "|INFO: task |nobody cared|Flags mismatch")


# The look as a program in every image hil builds (hil/firmware/images.py writes script() there):
# typed into the nested guest's console, the inline command's ~450 characters cost about a
# second each time, twice a testcase; the program's name and token cost a tenth of that.
SCRIPT_NAME = "hil-kmsg-mark"
SCRIPT_PATH = f"/usr/bin/{SCRIPT_NAME}"
# What a shell answers for a command it cannot find (POSIX): then the inline command.
NOT_FOUND = 127


def inline_mark_command(token: str) -> str:
    """The look, whole, for a shell whose image lacks the program (status NOT_FOUND).
    Write a mark at level 7 (debug: /dev/kmsg's default, 4, would reach a quiet console
    and interleave with the shell's output), then print the log from the previous mark on if
    any line of it may open a report, else only the marks.
    busybox dmesg (`[-cr] [-n LEVEL] [-s SIZE]`) has no --since and -c clears the buffer that
    the testcases read; awk keeps the transfer over the console small."""
    return (f'echo "<7>{MARK} {token}" > /dev/kmsg && dmesg | '
            f"awk '/{MARK} /{{p = q; q = NR}} {{l[NR] = $0}} "
            "END {s = p ? p : 1; t = 0; for (i = s; i <= NR; i++) if (l[i] ~ "
            f"/{TRIGGER}/) t = 1; "
            "if (t) {for (i = s; i <= NR; i++) print l[i]} "
            "else {if (p) print l[p]; print l[q]}}'")


def script() -> str:
    """SCRIPT_PATH's text: the look, for the token given as its argument."""
    return f"#!/bin/sh\n# {SCRIPT_NAME} TOKEN: hil's look at the kernel log (hil/measure/kernel_log.py)\n" \
        + inline_mark_command("$1") + "\n"


def mark_command(token: str) -> str:
    """The look, by the image's program."""
    return f"{SCRIPT_NAME} {token}"


def since_mark(text: str, token: str) -> str | None:
    """The lines between the mark before `token`'s and `token`'s own; all lines up to it if
    there is none (a new boot, or a buffer that wrapped). None if `token` is not there."""
    lines = text.splitlines()
    marks = [(i, m[1]) for i, ln in enumerate(lines) if (m := _MARK.match(message(ln)))]
    ends = [i for i, t in marks if t == token]
    if not ends:
        return None
    end = ends[-1]
    start = max((i + 1 for i, _ in marks if i < end), default=0)
    return "".join(ln + "\n" for ln in lines[start:end])
