"""CPU time of a VMM process on the board, per thread, from /proc/PID/task/*/stat.

The VMM's threads are its main loop (the userspace virtio-net backend, KVM_IRQ_LINE
injections), one per guest vCPU (where the guest itself runs, counted as guest time) and, with
vhost-net, the vhost worker (a thread of the VMM's process since Linux 6.4). What a
transaction costs the VMM is their time on the CPU less the guest's own: utime + stime - gtime.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# proc(5): after `pid (comm) state`, utime and stime are fields 14 and 15, guest_time 43.
_UTIME, _STIME, _GTIME = 14, 15, 43
USER_HZ = 100  # the clock ticks of /proc: fixed by the ABI on arm64
_VCPU = re.compile(r"^CPU \d+/KVM$")


@dataclass(frozen=True)
class Thread:
    tid: int
    comm: str
    utime: int  # clock ticks, guest time included
    stime: int
    gtime: int  # ticks the thread ran the guest

    @property
    def kind(self) -> str:
        if _VCPU.match(self.comm):
            return "vcpu"
        if self.comm.startswith("vhost-"):
            return "vhost"
        return "vmm"  # the main loop and QEMU's helper threads

    @property
    def host_ticks(self) -> int:
        return self.utime + self.stime - self.gtime


def command(pid_expr: str) -> str:
    """A board shell line printing the stat line of every thread of the process. A thread may
    end between the listing and the reading (QEMU's thread pool starts and ends workers as
    I/O comes and goes): it is left out, and the time it had is not counted."""
    return f"for f in /proc/{pid_expr}/task/*/stat; do cat $f 2>/dev/null; done; true"


def parse(text: str) -> dict[int, Thread]:
    out = {}
    for line in text.splitlines():
        if ")" not in line:
            continue
        # comm may hold spaces and parentheses ("CPU 0/KVM"): it ends at the last ')'.
        head, _, rest = line.rpartition(")")
        tid, _, comm = head.partition(" (")
        fields = rest.split()  # fields[0] is field 3 (state)
        utime, stime, gtime = (int(fields[n - 3]) for n in (_UTIME, _STIME, _GTIME))
        out[int(tid)] = Thread(int(tid), comm, utime, stime, gtime)
    return out


def host_ticks_by_kind(before: dict[int, Thread], after: dict[int, Thread]) -> dict[str, int]:
    """Ticks each kind of thread spent outside the guest between two readings; a thread that
    started in between counts from zero."""
    out: dict[str, int] = {}
    for tid, t in after.items():
        earlier = before.get(tid)
        grown = t.host_ticks - (earlier.host_ticks if earlier else 0)
        out[t.kind] = out.get(t.kind, 0) + grown
    return out


def guest_ticks(before: dict[int, Thread], after: dict[int, Thread]) -> int:
    return sum(t.gtime - (before[tid].gtime if tid in before else 0) for tid, t in after.items())


def total(by_kind: dict[str, int], kinds: Iterable[str] = ("vmm", "vcpu", "vhost")) -> int:
    return sum(by_kind.get(k, 0) for k in kinds)


def cpu_seconds(stat: str | Path) -> float:
    """User + system CPU so far of a process or thread of this machine, from its stat file
    (`/proc/PID/stat`, `/proc/self/task/TID/stat`); 0 once it is gone."""
    try:
        t = next(iter(parse(Path(stat).read_text()).values()))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0.0
    return (t.utime + t.stime) / USER_HZ
