"""Measurements taken through a board or guest shell: counters before and after a workload."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from hil.labgrid import vmm
from hil.labgrid.shell import Shell
from hil.measure import interrupts, iperf, kvm_trace, procstat, sockperf

BOARD_ADDR = "169.254.77.1"


def arm_kvm_counters(board: Shell) -> None:
    for cmd in kvm_trace.arm_commands():
        board.check(cmd)


def read_kvm_counters(board: Shell) -> kvm_trace.Counters:
    hists = {}
    for event in kvm_trace.HISTS:
        text = board.check(kvm_trace.read_command(event))
        if kvm_trace.dropped(text):
            raise RuntimeError(f"the {event} histogram dropped entries: raise its size")
        hists[event] = kvm_trace.parse_hist(text)
    return kvm_trace.Counters(hists["kvm_irq_line"], hists["vgic_update_irq_pending"],
                              hists["kvm_mmio"], hists["kvm_exit"], hists["kvm_userspace_exit"])


def guest_interrupts(guest: Shell) -> list[interrupts.IrqRow]:
    return interrupts.parse(guest.read("/proc/interrupts"))


def virtio_transports(guest: Shell) -> dict[str, int]:
    """virtioN -> base address of its virtio-mmio transport, from the guest's sysfs."""
    out = guest.check("for d in /sys/bus/virtio/devices/virtio*; do "
                      "echo ${d##*/} $(basename $(readlink -f $d/..)); done")
    return {name: kvm_trace.transport_base(plat) for name, plat in
            (line.split() for line in out.splitlines() if line.strip())}


@dataclass(frozen=True)
class TrafficRun:
    result: iperf.IperfResult
    counters: kvm_trace.Counters
    irq_before: list[interrupts.IrqRow]
    irq_after: list[interrupts.IrqRow]


def iperf_with_counters(board: Shell, guest: Shell, seconds: int = 3, parallel: int = 1,
                        reverse: bool = False) -> TrafficRun:
    """One iperf3 run from guest to board, with KVM counters and guest interrupt counts."""
    board.check(iperf.server_command())
    arm_kvm_counters(board)
    before = guest_interrupts(guest)
    out = guest.check(iperf.client_command(BOARD_ADDR, seconds, parallel, reverse),
                      timeout=seconds * 10 + 60)
    after = guest_interrupts(guest)
    counters = read_kvm_counters(board)
    return TrafficRun(iperf.parse(out), counters, before, after)


def iperf_from_each_cpu_with_counters(board: Shell, guest: Shell, cpus: int,
                                      seconds: int = 3) -> TrafficRun:
    """One iperf3 client pinned to each guest CPU, all at once, each to its own server.

    So every queue pair of a multiqueue virtio-net carries traffic: the guest sends on the
    queue of the sending CPU (XPS), and the board's tap answers a flow on the queue it came
    from. iperf3's -P alone sends every stream from one CPU.
    """
    for cpu in range(cpus):
        board.check(iperf.server_command(iperf.PORT + cpu))
    arm_kvm_counters(board)
    before = guest_interrupts(guest)
    clients = " ".join(
        f"{iperf.client_command(BOARD_ADDR, seconds, port=iperf.PORT + cpu, cpu=cpu)}"
        f" >/tmp/iperf-{cpu}.json 2>&1 &" for cpu in range(cpus))
    guest.check(f"{clients} wait", timeout=seconds * 10 + 60)
    after = guest_interrupts(guest)
    counters = read_kvm_counters(board)
    results = [iperf.parse(guest.check(f"cat /tmp/iperf-{cpu}.json")) for cpu in range(cpus)]
    return TrafficRun(iperf.combine(results), counters, before, after)


def vmm_threads(board: Shell) -> dict[int, procstat.Thread]:
    """The guest VMM's threads on the board and their CPU times so far."""
    return procstat.parse(board.check(procstat.command(f"$(cat {vmm.PIDFILE})")))


@dataclass(frozen=True)
class RequestResponseRun:
    result: sockperf.PingPong
    counters: kvm_trace.Counters
    irq_before: list[interrupts.IrqRow]
    irq_after: list[interrupts.IrqRow]
    vmm_before: dict[int, procstat.Thread]
    vmm_after: dict[int, procstat.Thread]


def ping_pong_with_counters(board: Shell, guest: Shell, seconds: int = 3) -> RequestResponseRun:
    """One sockperf TCP ping-pong from guest to board, with KVM counters, the VMM's thread
    times and guest interrupt counts.

    Between arming and reading the counters the guest's console carries only `sh FILE`:
    every character the guest prints on its PL011 is an exit, so the client's report goes
    to a file and is read afterwards.
    """
    script, report = "/tmp/hil-pp.sh", "/tmp/hil-pp.txt"
    board.check(sockperf.stop_server_command())
    board.check(sockperf.server_command(BOARD_ADDR))
    client = f"{sockperf.client_command(BOARD_ADDR, seconds)} >{report} 2>&1"
    guest.check(f"echo {shlex.quote(client)} >{script}")
    before = guest_interrupts(guest)
    vmm_before = vmm_threads(board)
    arm_kvm_counters(board)
    guest.check(f"sh {script}", timeout=seconds * 10 + 60)
    counters = read_kvm_counters(board)
    vmm_after = vmm_threads(board)
    after = guest_interrupts(guest)
    out = guest.read(report)
    board.check(sockperf.stop_server_command())
    return RequestResponseRun(sockperf.parse(out), counters, before, after, vmm_before, vmm_after)
