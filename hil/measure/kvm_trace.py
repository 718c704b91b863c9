"""Counting KVM's interrupt injections and MMIO exits on a board, with ftrace histograms.

Histogram triggers count inside the kernel, so nothing is dropped however busy the run is
(a trace buffer would overflow during iperf3). Three events tell the irqfd story:
- kvm:kvm_irq_line: an interrupt line set by userspace (the VMM's KVM_IRQ_LINE ioctl);
- kvm:vgic_update_irq_pending: every line change the vGIC sees, from userspace or from an
  irqfd (arm64's irqfd fast path never reaches kvm_set_irq, so that event stays silent);
- kvm:kvm_mmio: an MMIO access the VMM emulates (InterruptStatus reads, InterruptACK writes).
Two more say what else the guest's interrupts cost:
- kvm:kvm_exit: every exit of a guest vCPU to the host, by why (a host interrupt, or a trap
  with its exception class: WFI, a data abort for MMIO, a system register, HVC...);
- kvm:kvm_userspace_exit: the exits that went on to the VMM process, by KVM_EXIT_* reason.
kvm_exit fires when a guest's run returns to KVM's run loop; the traps the world switch
handles itself and re-enters the guest at once (some system registers, FP/SIMD) are not
among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

TRACING = "/sys/kernel/tracing"
HISTS = {
    "kvm_irq_line": "irq_num,level",
    "vgic_update_irq_pending": "irq,level",
    "kvm_mmio": "gpa,type",
    "kvm_exit": "ret,esr_ec",
    "kvm_userspace_exit": "reason",
}
MMIO_WRITE = 2
MMIO_READ = 1  # "unsatisfied-read" (type 0) is the exit; "read" (1) its completion
INTERRUPT_STATUS = 0x60
INTERRUPT_ACK = 0x64

# arm64 kvm_exit: `ret` is the exception that left the guest (ARM_EXCEPTION_*), `esr_ec` the
# exception class of a trap (ESR_ELx_EC_*, arch/arm64/include/asm/esr.h).
EXIT_IRQ = 0  # a host interrupt while the guest ran (timer, IPI): no trap of the guest's own
EXIT_TRAP = 2
EXCEPTION_CLASSES = {
    0x01: "wfx", 0x07: "fp", 0x16: "hvc", 0x17: "smc", 0x18: "sysreg",
    0x20: "iabt", 0x24: "dabt",  # a stage-2 abort: MMIO (to the VMM or the in-kernel vGIC)
}
KVM_EXIT_REASONS = {2: "io", 6: "mmio", 8: "shutdown", 9: "fail_entry", 10: "intr",
                    17: "internal_error", 24: "system_event"}

_ENTRY = re.compile(r"^\{(?P<keys>[^}]*)\}\s+hitcount:\s+(?P<hits>\d+)", re.M)


def parse_hist(text: str) -> dict[tuple[int, ...], int]:
    """A `hist` file -> {(key values...): hitcount}; values parsed as integers."""
    out: dict[tuple[int, ...], int] = {}
    for m in _ENTRY.finditer(text):
        values = tuple(int(v.split(":")[1].strip(), 0) for v in m["keys"].split(","))
        out[values] = out.get(values, 0) + int(m["hits"])
    return out


def dropped(text: str) -> int:
    m = re.search(r"Dropped:\s+(\d+)", text)
    return int(m[1]) if m else 0


@dataclass(frozen=True)
class Counters:
    irq_line: dict[tuple[int, ...], int]  # (intid, level) -> hits, from userspace
    vgic: dict[tuple[int, ...], int]  # (intid, level) -> hits, from anywhere
    mmio: dict[tuple[int, ...], int]  # (gpa, type) -> hits
    exits: dict[tuple[int, ...], int] = field(default_factory=dict)  # (ret, esr_ec) -> hits
    userspace_exits: dict[tuple[int, ...], int] = field(default_factory=dict)  # (reason,) -> hits

    def exits_by_reason(self) -> dict[str, int]:
        """Every exit of the guest, by why: `irq` (the host's), a trap's exception class name
        (`dabt`, `wfx`, ...; `ec0x..` for one not named), `exception<ret>` for the rest."""
        out: dict[str, int] = {}
        for (ret, ec), n in self.exits.items():
            if ret == EXIT_IRQ:
                why = "irq"
            elif ret == EXIT_TRAP:
                why = EXCEPTION_CLASSES.get(ec, f"ec{ec:#04x}")
            else:
                why = f"exception{ret}"
            out[why] = out.get(why, 0) + n
        return out

    def total_exits(self) -> int:
        return sum(self.exits.values())

    def vmm_exits(self) -> dict[str, int]:
        """Exits that reached the VMM process (KVM_RUN returned), by KVM_EXIT_* reason."""
        return {KVM_EXIT_REASONS.get(r, f"reason{r}"): n for (r,), n in self.userspace_exits.items()}

    def userspace_injections(self, intids: Iterable[int]) -> int:
        """Times the VMM raised one of these interrupts through KVM_IRQ_LINE."""
        wanted = set(intids)
        return sum(n for (intid, level), n in self.irq_line.items() if intid in wanted and level)

    def kernel_injections(self, intids: Iterable[int]) -> int:
        """Times these interrupts were raised without the VMM: by an irqfd."""
        wanted = set(intids)
        raised = sum(n for (intid, level), n in self.vgic.items() if intid in wanted and level)
        return raised - self.userspace_injections(wanted)

    def mmio_exits(self, base: int, offset: int) -> int:
        """Exits to the VMM for one register of one transport (reads or writes)."""
        kind = MMIO_WRITE if offset == INTERRUPT_ACK else MMIO_READ
        return sum(n for (gpa, t), n in self.mmio.items() if gpa == base + offset and t == kind)


def arm_commands() -> list[str]:
    """Board shell lines that (re)start the histograms from zero."""
    cmds = []
    for event, keys in HISTS.items():
        trig = f"{TRACING}/events/kvm/{event}/trigger"
        cmds.append(f"echo '!hist:keys={keys}' > {trig} 2>/dev/null; "
                    f"echo 'hist:keys={keys}:size=4096' > {trig}")
    return cmds


def read_command(event: str) -> str:
    return f"cat {TRACING}/events/kvm/{event}/hist"


def transport_base(platform_name: str) -> int:
    """`a003e00.virtio_mmio` (a platform device name in the guest) -> 0xa003e00."""
    return int(platform_name.split(".", 1)[0], 16)
