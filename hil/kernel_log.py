"""What a board's kernel messages say about virtualization: EL2, KVM mode and the GIC."""

from __future__ import annotations

import re
from dataclasses import dataclass


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
