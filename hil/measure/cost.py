"""Where an interrupt wiring's cost goes: exits, injections and VMM CPU time of one run,
per queue interrupt and per transaction.

Pure: the counters come from the board's ftrace histograms (hil/measure/kvm_trace.py), the thread
times from /proc (hil/measure/procstat.py), the interrupts from the guest's /proc/interrupts, the
transactions from the request/response benchmark (hil/measure/sockperf.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hil.measure import kvm_trace, procstat
from hil.measure.throughput import NET_QUEUES, Wiring, queue_lines


@dataclass(frozen=True)
class Cost:
    """One run of one wiring. None: the figure does not exist for this wiring (an MSI-X
    vector cannot be raised through KVM_IRQ_LINE; PCI has no InterruptStatus register)."""

    transactions: int
    queue_interrupts: int
    injections: int | None  # KVM_IRQ_LINE raises of the queue lines by the VMM
    status_ack_exits: int | None  # InterruptStatus reads and InterruptACK writes
    exits: dict[str, int]  # every exit of the guest's vCPUs, by reason (kvm_trace)
    vmm_exits: dict[str, int]  # the exits that went on to the VMM process, by reason
    vmm_ticks: dict[str, int]  # VMM threads' CPU time outside the guest, by kind (procstat)
    ticks_per_s: int

    @property
    def total_exits(self) -> int:
        return sum(self.exits.values())

    def _per(self, n: int | None, d: int) -> float | None:
        return None if n is None or not d else n / d

    @property
    def exits_per_interrupt(self) -> float | None:
        return self._per(self.total_exits, self.queue_interrupts)

    @property
    def exits_per_transaction(self) -> float | None:
        return self._per(self.total_exits, self.transactions)

    @property
    def injections_per_interrupt(self) -> float | None:
        return self._per(self.injections, self.queue_interrupts)

    @property
    def status_ack_exits_per_interrupt(self) -> float | None:
        return self._per(self.status_ack_exits, self.queue_interrupts)

    @property
    def interrupts_per_transaction(self) -> float | None:
        return self._per(self.queue_interrupts, self.transactions)

    @property
    def vmm_us_per_transaction(self) -> float | None:
        """The board's CPU time in the VMM process (main loop, vCPU threads outside the guest,
        vhost worker) per transaction, in µs of the board's clock."""
        us = procstat.total(self.vmm_ticks) * 1e6 / self.ticks_per_s
        return None if not self.transactions else us / self.transactions

    def exits_per_transaction_by_reason(self) -> dict[str, float]:
        if not self.transactions:
            return {}
        return {why: n / self.transactions for why, n in sorted(self.exits.items())}

    def figures(self) -> dict[str, float | None]:
        """The figures a benchmark records and compares, by name."""
        return {
            "exits_per_interrupt": self.exits_per_interrupt,
            "exits_per_transaction": self.exits_per_transaction,
            "injections_per_interrupt": self.injections_per_interrupt,
            "status_ack_exits_per_interrupt": self.status_ack_exits_per_interrupt,
            "interrupts_per_transaction": self.interrupts_per_transaction,
            "vmm_us_per_transaction": self.vmm_us_per_transaction,
        }


def of_run(mode: str, wiring: Wiring, counters: kvm_trace.Counters, transports: list[int],
           vmm_before: dict[int, procstat.Thread], vmm_after: dict[int, procstat.Thread],
           transactions: int, ticks_per_s: int, queues: Sequence[str] = NET_QUEUES) -> Cost:
    """A run's cost. `mode` is how the wiring's queue interrupts reach the guest
    (throughput.WIRINGS); `transports` the virtio-mmio bases of the guest's devices (empty on
    PCI), whose InterruptStatus/ACK exits are counted; `queues` the device's queues whose
    interrupts count (virtio-net's with one queue pair unless given)."""
    lines = queue_lines(mode, queues)
    mmio = mode != "msi-x"
    status_ack = (sum(counters.mmio_exits(base, reg) for base in transports
                      for reg in (kvm_trace.INTERRUPT_STATUS, kvm_trace.INTERRUPT_ACK))
                  if mmio else None)
    return Cost(
        transactions=transactions,
        queue_interrupts=sum(wiring.interrupts.get(q, 0) for q in lines),
        injections=sum(wiring.injections.get(q, 0) for q in lines) if mmio else None,
        status_ack_exits=status_ack,
        exits=counters.exits_by_reason(),
        vmm_exits=counters.vmm_exits(),
        vmm_ticks=procstat.host_ticks_by_kind(vmm_before, vmm_after),
        ticks_per_s=ticks_per_s,
    )
