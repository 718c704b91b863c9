"""Which interrupt line signalled which virtqueue, from a kprobe on vring_interrupt() in a guest.

Every virtio-mmio handler ends in vring_interrupt(irq, vq): a per-queue line's handler is that
function itself, line 0 and the shared line call it for each queue they walk. Its arguments,
recorded by a kprobe event that the kernel command line sets (so that it is on before the
driver probes), say which line signalled which queue. Outside single mode, line 0 must leave a
queue that has a line of its own to that line: walking it too runs the queue's callback on two
CPUs at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hil.measure.kvm_trace import TRACING

# kprobe_event= alone leaves the ring buffer at one page per CPU: naming the (default) nop
# tracer gives it its full size at boot. nooverwrite keeps the earliest events, those of the
# driver's probe, should the buffer fill.
BOOT_ARGS = ("kprobe_event=p:hil/vring,vring_interrupt,irq=$arg1:s32,vq=$arg2:x64 "
             "ftrace=nop trace_options=nooverwrite")
TRACE = f"{TRACING}/trace"  # read compressed: it is long for a guest console

_EVENT = re.compile(r"\svring: \([^)]*\) irq=(?P<irq>-?\d+) vq=(?P<vq>0x[0-9a-f]+)")


@dataclass(frozen=True)
class Signal:
    irq: int
    vq: int  # the struct virtqueue's address: the same queue while the driver stays bound


def parse(text: str) -> list[Signal]:
    """The vring_interrupt() calls in a trace, in order."""
    return [Signal(int(m["irq"]), int(m["vq"], 16)) for m in _EVENT.finditer(text)]


def queues_by_line(signals: Iterable[Signal]) -> dict[int, set[int]]:
    """irq -> the virtqueues it signalled."""
    out: dict[int, set[int]] = {}
    for s in signals:
        out.setdefault(s.irq, set()).add(s.vq)
    return out


def lines_by_queue(signals: Iterable[Signal]) -> dict[int, set[int]]:
    """virtqueue -> the irqs that signalled it."""
    out: dict[int, set[int]] = {}
    for s in signals:
        out.setdefault(s.vq, set()).add(s.irq)
    return out


def crossed(signals: Iterable[Signal], irqs: Iterable[int]) -> dict[int, list[int]]:
    """The virtqueues that more than one of `irqs` (one device's lines) signalled."""
    mine = set(irqs)
    return {vq: sorted(by) for vq, by in lines_by_queue(s for s in signals if s.irq in mine).items()
            if len(by) > 1}
