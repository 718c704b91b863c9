"""The part of a console log that shows a failure, and the kernel log lines that report it.

Pure. labgrid's console logs carry no timestamps or case markers, so a failure is located by
what it says: the kernel report lines it quotes, else the longest lines of its message, each
looked up from the end of the log (the failing case ran after the cases that passed); when
the plugin recorded where the case's console output began and ended (`hil_console`, byte
offsets per console), that range is used instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hil.measure import kernel_log

# The JUnit property the plugin gives a failed case: {console: [start, end]}, byte offsets of
# the case's output in each console log (hil/plugin/hooks.py).
OFFSETS_PROPERTY = "hil_console"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HEADER_END = "=== Log starts here ==="
BEFORE, AFTER = 12, 25
MIN_ANCHOR = 16  # shorter message lines ("assert 0", "None") match anywhere


@dataclass(frozen=True)
class Excerpt:
    console: str  # which console log
    first_line: int  # 1-based line number in that log
    lines: tuple[str, ...]
    anchor: str  # what located it


def clean(text: str) -> list[str]:
    return [_ANSI.sub("", ln).replace("\r", "") for ln in text.split("\n")]


def kernel_lines(*texts: str) -> list[str]:
    """Kernel report lines (WARN, BUG, Oops, lockdep, ...) in a failure's message or output."""
    out: list[str] = []
    for text in texts:
        for finding in kernel_log.scan("\n".join(clean(text))):
            for line in finding.context:
                if line not in out:
                    out.append(line)
    return out


def anchors(message: str, kernel: Iterable[str] = ()) -> list[str]:
    """What to look for in a console, best first: kernel report opening lines, then the
    message's own lines, longest first."""
    kernel_first = [k for k in kernel if kernel_log.message(k)][:3]
    own = sorted({ln.strip() for ln in clean(message) if len(ln.strip()) >= MIN_ANCHOR},
                 key=len, reverse=True)
    # Traceback noise names the test source, not the console.
    own = [ln for ln in own if not ln.startswith(("E ", "File ", "testcases/", "def ", "> "))]
    return kernel_first + own[:5]


def locate(console: str, text: str, anchors_: Iterable[str],
           before: int = BEFORE, after: int = AFTER) -> Excerpt | None:
    lines = clean(text)
    for anchor in anchors_:
        needle = kernel_log.message(anchor).strip() or anchor
        for i in range(len(lines) - 1, -1, -1):
            if needle in lines[i]:
                start = max(0, i - before)
                return Excerpt(console, start + 1, tuple(lines[start:i + after + 1]), anchor)
    return None


def sizes(directory: Path | None) -> dict[str, int]:
    """Each console log's size now: labgrid writes them unbuffered, so this is where the next
    output will begin."""
    if directory is None or not directory.is_dir():
        return {}
    return {p.name.removeprefix("console_"): p.stat().st_size
            for p in sorted(directory.iterdir()) if p.is_file()}


def ranges(before: dict[str, int], after: dict[str, int]) -> dict[str, list[int]]:
    """What each console wrote between two sizes() (a console new since then began at 0)."""
    return {name: [before.get(name, 0), end] for name, end in after.items()
            if end > before.get(name, 0)}


def tail(console: str, data: bytes, start: int, end: int, limit: int = 60) -> Excerpt:
    """The case's own output of one console, by the byte offsets the plugin recorded."""
    chunk = data[start:end].decode(errors="replace")
    lines = clean(chunk)
    first = data[:start].count(b"\n") + 1
    if len(lines) > limit:
        first += len(lines) - limit
        lines = lines[-limit:]
    return Excerpt(console, first, tuple(lines), f"bytes {start}-{end} of the case")
