"""4 KiB random direct reads in the guest (firmware/rootfs/hil-blkread.c): command and result."""

from __future__ import annotations

import re
from dataclasses import dataclass

TOOL = "hil-blkread"
_LINE = re.compile(r"(cpu (?P<cpu>\d+)|total) reads (?P<reads>\d+) errors (?P<errors>\d+) "
                   r"seconds (?P<seconds>[\d.]+)")


class BlkReadError(ValueError):
    """hil-blkread printed no result, or its reads failed."""


@dataclass(frozen=True)
class BlkRead:
    reads: int
    seconds: float
    per_cpu: dict[int, int]  # reader's CPU -> reads

    @property
    def iops(self) -> float:
        return self.reads / self.seconds if self.seconds else 0.0


def command(device: str, seconds: float, cpus: int) -> str:
    """One synchronous reader pinned to each of the first `cpus` CPUs."""
    return f"{TOOL} {device} {seconds:g} {cpus}"


def parse(text: str) -> BlkRead:
    per_cpu: dict[int, int] = {}
    total = None
    for m in _LINE.finditer(text):
        if int(m["errors"]):
            raise BlkReadError(f"{TOOL}: {m[0]}: reads failed")
        if m["cpu"] is None:
            total = (int(m["reads"]), float(m["seconds"]))
        else:
            per_cpu[int(m["cpu"])] = int(m["reads"])
    if total is None or not per_cpu:
        raise BlkReadError(f"{TOOL} printed no result: {text[-300:]!r}")
    if sum(per_cpu.values()) != total[0]:
        raise BlkReadError(f"{TOOL}: its readers' reads do not add up to its total: {text!r}")
    return BlkRead(total[0], total[1], per_cpu)
