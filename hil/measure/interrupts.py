"""/proc/interrupts, parsed into rows: per-CPU counts, controller, hwirq, trigger and name."""

from __future__ import annotations

from dataclasses import dataclass

TRIGGERS = ("Edge", "Level")
# How /proc/interrupts names the GIC of each version (GICv2: "GIC-0", or "GICv2" on newer
# kernels).
GIC_CONTROLLERS = {2: ("GICv2", "GIC-0"), 3: ("GICv3",)}
# The rows hil reads, their padding squeezed: a nested guest's console carries about a
# kilobyte a second, /proc/interrupts pads each count to 11 columns, and its IPI rows (half of
# it with two CPUs) are never read. parse() splits on whitespace either way.
COMMAND = "grep -v IPI /proc/interrupts | tr -s ' '"


@dataclass(frozen=True)
class IrqRow:
    irq: str  # "17", or "IPI0", "Err" for the architecture's rows
    counts: tuple[int, ...]
    controller: str | None = None
    hwirq: int | None = None
    trigger: str | None = None
    name: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def numbered(self) -> bool:
        return self.irq.isdigit()


def parse(text: str) -> list[IrqRow]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].split()[0].startswith("CPU"):
        raise ValueError("not /proc/interrupts: the first line must name the CPUs")
    ncpu = len(lines[0].split())
    rows = []
    for line in lines[1:]:
        label, _, rest = line.partition(":")
        fields = rest.split()
        counts: list[int] = []
        while fields and len(counts) < ncpu and fields[0].isdigit():
            counts.append(int(fields.pop(0)))
        label = label.strip()
        if not label.isdigit():
            rows.append(IrqRow(label, tuple(counts), name=" ".join(fields)))
            continue
        controller = fields.pop(0) if fields else None
        hwirq = int(fields.pop(0)) if fields and fields[0].isdigit() else None
        trigger = fields.pop(0) if fields and fields[0] in TRIGGERS else None
        rows.append(IrqRow(label, tuple(counts), controller, hwirq, trigger, " ".join(fields)))
    return rows


def by_name(rows: list[IrqRow], prefix: str) -> list[IrqRow]:
    """Numbered rows whose action name starts with `prefix` (e.g. "virtio0")."""
    return [r for r in rows if r.numbered and r.name.startswith(prefix)]


def gic_spi(row: IrqRow) -> int | None:
    """The GIC SPI number of a row on a GIC controller (hwirq = SPI + 32)."""
    if row.controller is None or not row.controller.startswith("GIC") or row.hwirq is None:
        return None
    return row.hwirq - 32 if row.hwirq >= 32 else None


def delta(before: list[IrqRow], after: list[IrqRow]) -> dict[str, tuple[int, ...]]:
    """Per-CPU count growth of each numbered irq between two snapshots."""
    old = {r.irq: r.counts for r in before}
    return {
        r.irq: tuple(a - b for a, b in zip(r.counts, old.get(r.irq, (0,) * len(r.counts)), strict=False))
        for r in after
    }
