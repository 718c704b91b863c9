"""kmemleak's report (/sys/kernel/debug/kmemleak): one entry per suspected leak."""

from __future__ import annotations

import re

# Each report starts with this line; backtrace and hex dump lines follow, indented.
_OBJECT = re.compile(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):")

CLEAR = "echo clear > /sys/kernel/debug/kmemleak"
# kmemleak reports only objects older than its minimum age (5 s): wait that long first.
SCAN = "sleep 6; echo scan > /sys/kernel/debug/kmemleak; cat /sys/kernel/debug/kmemleak"


def leaks(report: str) -> list[str]:
    """The suspected leaks in a kmemleak report, each with its backtrace."""
    out: list[list[str]] = []
    for line in report.replace("\r", "").splitlines():
        if _OBJECT.match(line):
            out.append([line])
        elif out and line.startswith(" "):
            out[-1].append(line)
    return ["\n".join(entry) for entry in out]
