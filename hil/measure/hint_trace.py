"""Which interrupt lines had their affinity hint set or cleared, from a kprobe in a guest.

irq_set_affinity_and_hint() and irq_update_affinity_hint() both end in
__irq_apply_affinity_hint(irq, mask, setaffinity); a NULL mask clears the hint. The probe is
set at run time, before the action whose hints are to be seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hil.measure.kvm_trace import TRACING

PROBE = "p:hil/hint __irq_apply_affinity_hint irq=$arg1:u32 mask=$arg2:x64"
ENABLE = (f"echo '{PROBE}' >> {TRACING}/kprobe_events && "
          f"echo 1 > {TRACING}/events/hil/hint/enable")
TRACE = f"{TRACING}/trace"  # read compressed: it is long for a guest console

_EVENT = re.compile(r"\shint: \([^)]*\) irq=(?P<irq>\d+) mask=(?P<mask>0x[0-9a-f]+)")


@dataclass(frozen=True)
class Hint:
    irq: int
    mask: int  # the cpumask's address; 0 when the hint is cleared

    @property
    def cleared(self) -> bool:
        return self.mask == 0


def parse(text: str) -> list[Hint]:
    """The hints set or cleared in a trace, in order."""
    return [Hint(int(m["irq"]), int(m["mask"], 16)) for m in _EVENT.finditer(text)]
