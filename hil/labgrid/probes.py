"""Measurements taken through a board or guest shell: counters before and after a workload."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from hil.errors import CommandFailed
from hil.labgrid import vmm
from hil.labgrid.shell import Shell
from hil.measure import blkread, interrupts, iperf, kvm_trace, netstat, procstat, sockperf

BOARD_ADDR = "169.254.77.1"


def ping_board(guest: Shell, count: int = 3) -> str:
    """`count` echo requests from the guest to the board, each sent as soon as the last was
    answered (busybox's -A): the same packets and interrupts as at one a second, without the
    two idle seconds a default `ping -c 3` spends in every case that checks the link; -q: only
    the summary comes over the console."""
    return guest.check(f"ping -c {count} -A -q -W 5 {BOARD_ADDR}")


def kernel_lines(shell: Shell, *texts: str) -> list[str]:
    """The kernel messages that contain any of `texts` (fixed strings), filtered where they
    are: a guest's console carries about a kilobyte a second, so its whole log would cost a
    case several seconds."""
    pattern = " ".join(f"-e {shlex.quote(t)}" for t in texts)
    # grep's 1 is "no line matched"; anything else (or dmesg failing) is a failed command.
    return shell.check(f"dmesg | grep -F {pattern} || [ $? -eq 1 ]").splitlines()


def iperf_client(guest: Shell, command: str, timeout: float) -> str:
    """An iperf3 client's JSON: to a file in the guest, then read compressed (see
    Shell.read_compressed); a client that fails raises with what it printed."""
    out = "/tmp/hil-iperf.json"
    r = guest.run(f"{command} >{out} 2>&1", timeout)
    text = guest.read_compressed(out)
    if not r.ok:
        raise CommandFailed(guest.where, command, r.status, text)
    return text


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
    """The guest's interrupt rows (less the IPIs), read with little over its slow console."""
    return interrupts.parse(guest.check(interrupts.COMMAND))


def virtio_transports(guest: Shell) -> dict[str, int]:
    """virtioN -> base address of its virtio-mmio transport, from the guest's sysfs (the
    devices on PCI, as the guest's console, left out)."""
    out = guest.check("for d in /sys/bus/virtio/devices/virtio*; do "
                      "echo ${d##*/} $(basename $(readlink -f $d/..)); done")
    return {name: kvm_trace.transport_base(parent) for name, parent in
            (line.split() for line in out.splitlines() if line.strip())
            if parent.endswith(".virtio_mmio")}


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
    out = iperf_client(guest, iperf.client_command(BOARD_ADDR, seconds, parallel, reverse),
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
    results = [iperf.parse(guest.read_compressed(f"/tmp/iperf-{cpu}.json")) for cpu in range(cpus)]
    return TrafficRun(iperf.combine(results), counters, before, after)


def vmm_threads(board: Shell) -> dict[int, procstat.Thread]:
    """The guest VMM's threads on the board and their CPU times so far."""
    return procstat.parse(board.check(procstat.command(f"$(cat {vmm.PIDFILE})")))


@dataclass(frozen=True)
class Counted:
    """What the board and the guest counted while one guest command ran."""

    counters: kvm_trace.Counters
    irq_before: list[interrupts.IrqRow]
    irq_after: list[interrupts.IrqRow]
    vmm_before: dict[int, procstat.Thread]
    vmm_after: dict[int, procstat.Thread]


def counted(board: Shell, guest: Shell, command: str, timeout: float) -> Counted:
    """Run `command` in the guest between reading its interrupts and the VMM's thread times,
    with KVM's counters armed only around it.

    Between arming and reading the counters the guest's console carries only `sh FILE`:
    every character the guest prints on its PL011 is an exit, so the command's output must
    go to files, read afterwards.
    """
    script = "/tmp/hil-counted.sh"
    guest.check(f"echo {shlex.quote(command)} >{script}")
    before = guest_interrupts(guest)
    vmm_before = vmm_threads(board)
    arm_kvm_counters(board)
    guest.check(f"sh {script}", timeout=timeout)
    counters = read_kvm_counters(board)
    vmm_after = vmm_threads(board)
    after = guest_interrupts(guest)
    return Counted(counters, before, after, vmm_before, vmm_after)


def ping_pong_with_counters(board: Shell, guest: Shell, seconds: int = 3,
                            board_cpu: int | None = None,
                            flows: int = 1) -> tuple[list[sockperf.PingPong], Counted]:
    """sockperf TCP ping-pongs from guest to board, one flow from each of the first `flows`
    guest CPUs, each client pinned there (so its flow rides that CPU's queue pair), all at
    once, with KVM counters, the VMM's thread times and guest interrupt counts (see counted);
    `board_cpu` pins the board's servers."""
    ports = [sockperf.PORT + k for k in range(flows)]
    pin = f"taskset -c {board_cpu} " if board_cpu is not None else ""
    for port in ports:
        board.check(sockperf.stop_server_command(port))
        board.check(pin + sockperf.server_command(BOARD_ADDR, port))
    clients = " ".join(
        f"{sockperf.client_command(BOARD_ADDR, seconds, port, cpu=k)} >/tmp/hil-pp-{k}.txt 2>&1 &"
        for k, port in enumerate(ports))
    c = counted(board, guest, f"{clients} wait", timeout=seconds * 10 + 60)
    results = [sockperf.parse(guest.read(f"/tmp/hil-pp-{k}.txt")) for k in range(flows)]
    for port in ports:
        board.check(sockperf.stop_server_command(port))
    return results, c


@dataclass(frozen=True)
class UdpRun:
    result: iperf.UdpResult  # what the receiving programs say they read and missed
    flood: netstat.Flood  # what the kernels counted: sent, taken in, delivered
    counted: Counted


def udp_to_each_cpu_with_counters(board: Shell, guest: Shell, cpus: int, seconds: int = 1,
                                  length: int = 64, board_cpu: int | None = None,
                                  pps: int = 0) -> UdpRun:
    """Small UDP datagrams, `pps` a second in each flow or (0) as fast as the board sends
    them, one flow to each guest CPU, each
    received by a client pinned there (so each flow comes in on that CPU's queue pair, see
    iperf.udp_receiver_command), with the counters of `counted` and the kernels' own packet
    counts (hil/measure/netstat.py), read outside the counted window."""
    for cpu in range(cpus):
        board.check(iperf.server_command(iperf.PORT + cpu, board_cpu))
    clients = " ".join(
        f"{iperf.udp_receiver_command(BOARD_ADDR, seconds, length, iperf.PORT + cpu, cpu, pps)}"
        f" >/tmp/udp-{cpu}.json 2>&1 &" for cpu in range(cpus))

    def kernels() -> tuple[dict[str, int], dict[str, int], dict[int, int]]:
        return (netstat.parse_udp(board.check(netstat.UDP)),
                netstat.parse_udp(guest.check(netstat.UDP)),
                netstat.parse_softnet(guest.check(netstat.SOFTNET)))

    before = kernels()
    c = counted(board, guest, f"{clients} wait", timeout=seconds * 20 + 60)
    after = kernels()
    results = [iperf.parse_udp(guest.read_compressed(f"/tmp/udp-{cpu}.json")) for cpu in range(cpus)]
    result = iperf.combine_udp(results)
    flood = netstat.flood((before[0], after[0]), (before[1], after[1]), (before[2], after[2]),
                          result.seconds)
    return UdpRun(result, flood, c)


def blk_reads_with_counters(board: Shell, guest: Shell, device: str, cpus: int,
                            seconds: int = 1) -> tuple[blkread.BlkRead, Counted]:
    """4 KiB random direct reads of `device`, one reader pinned to each guest CPU, with the
    counters of `counted`."""
    report = "/tmp/hil-blkread.txt"
    c = counted(board, guest, f"{blkread.command(device, seconds, cpus)} >{report} 2>&1",
                timeout=seconds * 20 + 60)
    return blkread.parse(guest.read(report)), c
