"""The guest's virtio devices: which transport mode each uses, from sysfs and /proc/interrupts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hil.measure import interrupts

DEVICE_IDS = {1: "net", 2: "blk", 3: "console", 4: "rng"}

# One guest shell line: "<virtioN> <device id> <irq_mode or -> <bus of the transport>" for
# every virtio device (bus: platform for virtio-mmio, pci for virtio-pci).
LIST_COMMAND = (
    "for d in /sys/bus/virtio/devices/virtio*; do n=${d##*/}; "
    "m=$(cat $d/../irq_mode 2>/dev/null || echo -); b=$(readlink $d/../subsystem); "
    "echo \"$n $(cat $d/device) $m ${b##*/}\"; done"
)
TRANSPORTS = {"platform": "mmio", "pci": "pci"}


@dataclass(frozen=True)
class VirtioDevice:
    name: str  # virtio0
    kind: str  # net, blk, ... or the numeric id
    irq_mode: str | None  # single, shared, per-vq, none; None: the kernel has no irq_mode
    transport: str = "mmio"  # or pci (the guest's virtio console is there)


def parse_list(text: str) -> list[VirtioDevice]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 4 or not fields[0].startswith("virtio"):
            continue
        dev_id = int(fields[1], 16)
        out.append(VirtioDevice(fields[0], DEVICE_IDS.get(dev_id, str(dev_id)),
                                None if fields[2] == "-" else fields[2],
                                TRANSPORTS.get(fields[3], fields[3])))
    return out


def expected_line_names(mode: str, vq_names: list[str]) -> set[str]:
    """Suffixes of a device's interrupt names in each mode (see lines_of)."""
    return {"single": {""}, "shared": {"config", "queues"},
            "per-vq": {"config", *vq_names}}[mode]


def lines_of(rows: list[interrupts.IrqRow], device: str) -> dict[str, interrupts.IrqRow]:
    """A device's interrupt rows by suffix: "" for single mode, "config", "queues",
    or a virtqueue name such as "input.0"."""
    out = {}
    for row in rows:
        if row.name == device:
            out[""] = row
        elif row.name.startswith(device + "-"):
            out[row.name[len(device) + 1:]] = row
    return out


def affinity_problems(lines: dict[str, interrupts.IrqRow], grown: dict[str, tuple[int, ...]],
                      cpu_of: dict[str, int]) -> list[str]:
    """Each queue in `cpu_of` must have taken interrupts during a run, all on its own CPU.

    `lines` comes from lines_of, `grown` from interrupts.delta. A queue that took none proves
    nothing about where its interrupts go, so it is a problem too.
    """
    return placement_problems(lines, grown, {vq: frozenset({cpu}) for vq, cpu in cpu_of.items()})


def placement_problems(lines: dict[str, interrupts.IrqRow], grown: dict[str, tuple[int, ...]],
                       cpus_of: dict[str, frozenset[int]]) -> list[str]:
    """Each queue in `cpus_of` must have taken interrupts during a run, all on its CPUs."""
    problems = []
    for vq, cpus in cpus_of.items():
        row = lines.get(vq)
        if row is None:
            problems.append(f"{vq}: no interrupt line (lines: {sorted(lines)})")
            continue
        per_cpu = list(grown.get(row.irq, ()))
        where = "CPU" + ",".join(map(str, sorted(cpus))) if cpus else "no CPU"
        if not sum(per_cpu):
            problems.append(f"{vq} took no interrupt during the run")
        elif sum(per_cpu) != sum(n for cpu, n in enumerate(per_cpu) if cpu in cpus):
            problems.append(f"{vq} bound to {where} fired elsewhere: per CPU {per_cpu}")
    return problems


def parse_cpu_list(text: str) -> frozenset[int]:
    """A kernel CPU list ("0-1,3", or "" for none) as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


@dataclass(frozen=True)
class MatrixCell:
    """One guest x VMM x lines cell of the fallback matrix and the mode the protocol gives it.

    guest and vmm name entries of a board's `guest_kernels` and `vmms` options ("patched" or
    "stock"); pairs is virtio-net's queue pairs (nvqs with callbacks: 2 per pair).
    """

    guest: str
    vmm: str
    lines: int
    pairs: int
    mode: str

    @property
    def id(self) -> str:
        return f"guest-{self.guest}-vmm-{self.vmm}-lines-{self.lines}-pairs-{self.pairs}"


# Each cell's mode is copied from the compatibility table of firmware/PROTOCOL.md section 8,
# whose row (Guest | VMM | DT lines) is named above it; it is not computed, so that the
# driver's decision is checked against the document, not against a second implementation.
# nvqs: 2 with one queue pair, 4 with two (the control queue has no notifications).
FALLBACK_MATRIX = (
    # patched | unpatched | 1
    MatrixCell("patched", "stock", 1, 1, "single"),
    # patched | patched | 1
    MatrixCell("patched", "patched", 1, 1, "single"),
    # patched | patched | 2
    MatrixCell("patched", "patched", 2, 1, "shared"),
    # patched | patched | 1+nvqs or more
    MatrixCell("patched", "patched", 3, 1, "per-vq"),
    # patched | patched | fewer: 2 <= N < 1+nvqs
    MatrixCell("patched", "patched", 4, 2, "shared"),
    # unpatched | unpatched | 1
    MatrixCell("stock", "stock", 1, 1, "single"),
    # unpatched | patched | 1
    MatrixCell("stock", "patched", 1, 1, "single"),
    # unpatched | patched | 2, 1+nvqs or more (bit not accepted)
    MatrixCell("stock", "patched", 2, 1, "single"),
    MatrixCell("stock", "patched", 3, 1, "single"),
    # unpatched | patched: 4 lines for nvqs 4 lies between the row's "2" and "1+nvqs or more";
    # the row's reason (the bit is not accepted) holds for any N.
    MatrixCell("stock", "patched", 4, 2, "single"),
)


def net_vq_names(pairs: int) -> list[str]:
    """Names of virtio-net's queues with callbacks, with `pairs` queue pairs."""
    return [f"{kind}.{i}" for i in range(pairs) for kind in ("input", "output")]


# Each blk-mq hardware queue of /dev/vda and the CPUs it serves, "N:cpu_list" a line.
BLK_MQ_COMMAND = "for q in /sys/block/vda/mq/*; do echo \"${q##*/}:$(cat $q/cpu_list)\"; done"


def parse_blk_mq(text: str) -> dict[str, frozenset[int]]:
    """BLK_MQ_COMMAND's output -> {"req.N": the CPUs that queue N serves}."""
    return {f"req.{q}": parse_cpu_list(cpus)
            for q, _, cpus in (ln.partition(":") for ln in text.splitlines() if ln.strip())}


def blk_vq_names(queues: int) -> list[str]:
    """Names of virtio-blk's request queues (`num-queues`)."""
    return [f"req.{i}" for i in range(queues)]


def per_cpu(lines: dict[str, interrupts.IrqRow], grown: dict[str, tuple[int, ...]],
            names: Iterable[str], cpus: int) -> list[int]:
    """How many interrupts of the lines `names` (keys of `lines`) each of `cpus` CPUs took."""
    out = [0] * cpus
    for name in names:
        row = lines.get(name)
        for cpu, n in enumerate(grown.get(row.irq, ()) if row is not None else ()):
            if cpu < cpus:
                out[cpu] += n
    return out
