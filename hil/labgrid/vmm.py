"""The guest VMM's command line on the board, built from the board's declared settings.

Pure: the driver in drivers.py runs what this returns. Every board names where its guest's
serial goes (a virtio console on the virtual board, a TCP port on a real one), so no board is a
special case here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hil.errors import ConfigError

MONITOR_PORT = 4567


@dataclass(frozen=True)
class GuestConfig:
    qemu: str = "/usr/bin/qemu-system-aarch64"
    kernel: str = "/guest/Image"
    initrd: str = "/guest/initramfs.cpio"
    # The kernel's console arguments come from `console` (console_args), unless this names
    # a console= of its own.
    append: str = "hil.role=guest quiet"
    machine: str = "virt,gic-version=2"  # see gic_machine()
    # Interrupt lines per virtio-mmio transport; above 1 needs the patched VMM
    # (firmware/qemu), which takes it as the `virtio-mmio-irq-lines` machine property.
    irq_lines: int = 1
    cpus: int = 1
    memory: str = "256M"
    serial: str = "/dev/hvc0"
    # Where the guest's shell runs, both on `serial` (CONSOLES).
    console: str = "virtio"
    # Networking: a tap on the board with vhost-net, or QEMU's userspace virtio-net backend.
    tap: str = "tap0"
    tap_script: str = "/etc/hil/ifup"
    vhost: bool = True
    # Queue pairs of virtio-net (a multiqueue tap and `mq=on` above 1).
    queues: int = 1
    net_device: str = "virtio-net-device"
    net_options: dict[str, str] = field(default_factory=dict)
    extra: tuple[str, ...] = ()

    def with_changes(self, **changes: Any) -> GuestConfig:
        return replace(self, **changes)


# The GIC a board declares (`options.gic_version`, 2 when absent) and the guest machine KVM can
# give it: the in-kernel vGIC of the same version (a GICv3 without GICv2 compatibility, as
# QEMU's emulated one, cannot run a vgic-v2). On GICv3 without an ITS, as the board has none:
# no MSI for the guest's platform devices either, the case several lines per transport serve.
GIC_MACHINES = {2: "virt,gic-version=2", 3: "virt,gic-version=3,its=off"}
GIC_OPTION = "gic_version"


def gic_machine(version: int) -> str:
    return GIC_MACHINES[version]


# A lab place's tag for its board's GIC (`v2`, `v3`; `hil lab up` sets it), as its users
# reserve boards by it: one env file then serves a lab whose places have different GICs.
GIC_TAG = "gic"


def board_gic(option: object, place_tags: Mapping[str, str]) -> int:
    """The GIC of a board: what its env file declares (`options.gic_version`), else what its
    place's `gic` tag says, else 2. Both, and different: the env file is for another board."""
    tag = place_tags.get(GIC_TAG)
    from_tag = None
    if tag is not None:
        m = re.fullmatch(r"v(\d+)", tag)
        if m is None or int(m[1]) not in GIC_MACHINES:
            raise ConfigError(f"the place's tag {GIC_TAG}={tag} names no GIC hil knows: the "
                              f"lab must tag it {' or '.join(f'v{v}' for v in GIC_MACHINES)}")
        from_tag = int(m[1])
    if option is None:
        return from_tag or 2
    if not isinstance(option, int) or gic_problems(option):
        raise ConfigError(gic_problems(option)[0])
    if from_tag is not None and option != from_tag:
        raise ConfigError(f"the environment declares {GIC_OPTION}: {option} but its place is "
                          f"tagged {GIC_TAG}={tag}: use an environment for that board, or drop "
                          f"{GIC_OPTION} and let the place's tag say")
    return option


def gic_problems(value: object) -> list[str]:
    """What is wrong with a board's `gic_version` option."""
    if value is None or (type(value) is int and value in GIC_MACHINES):
        return []
    return [f"{GIC_OPTION} {value!r}: write one of {', '.join(map(str, GIC_MACHINES))} "
            "(the version of the board's interrupt controller)"]


# The guest's consoles. "virtio": its shell on a virtio console (hvc0 over virtio-pci), its
# early boot on its PL011 until hvc0 registers: a guest's PL011 traps to the board's VMM on
# every character (about 1 ms each, nested), a virtio console kicks once a write. "uart": all
# on the PL011, as the cost-model board's recorded figures were measured.
CONSOLES = {
    "virtio": "earlycon console=hvc0",
    "uart": "console=ttyAMA0",
}
# The PL011 and the virtio console share the board-side chardev through a multiplexer; its
# input goes to the frontend attached last, the virtio console.
CHARDEV_ID = "guestcon"


def console_args(cfg: GuestConfig) -> str:
    """The guest kernel's command line: the console's arguments, then `append` (which keeps
    its own console= if it names one: a case that boots another init decides)."""
    if re.search(r"(^|\s)console=", cfg.append):
        return cfg.append
    return f"{CONSOLES[cfg.console]} {cfg.append}".strip()


def chardev(serial: str) -> str:
    """A `-serial` spec (as boards declare the guest's serial) as a multiplexed `-chardev`:
    /dev/PATH, tcp:[HOST]:PORT[,options], unix:PATH[,options], file:PATH."""
    problems = serial_problems(serial)
    if problems:
        raise ConfigError(problems[0])
    head = f"id={CHARDEV_ID},mux=on"
    if serial.startswith("/dev/"):
        return f"serial,{head},path={serial}"
    if serial.startswith("file:"):
        return f"file,{head},path={serial[5:]}"
    if serial.startswith("unix:"):
        path, _, options = serial[5:].partition(",")
        return ",".join(filter(None, [f"socket,{head},path={path}", options]))
    m = re.fullmatch(r"tcp:([^:,]*):(\d+),?(.*)", serial)
    assert m is not None  # serial_problems took it
    host, port, options = m.groups()
    return ",".join(filter(None, [f"socket,{head},host={host},port={port}", options]))


def serial_problems(value: object) -> list[str]:
    """What is wrong with a GuestVMMDriver's `serial` (where the guest's consoles go)."""
    if isinstance(value, str) and (
            re.fullmatch(r"(/dev/|file:)[^,\s]+|unix:[^,\s]+(,\S*)?", value)
            or re.fullmatch(r"tcp:[^:,\s]*:\d+(,\S*)?", value)):
        return []
    return [f"serial {value!r}: write where the guest's console goes on the board, as QEMU's "
            "-serial takes it: /dev/PATH, tcp:[HOST]:PORT[,server=on,wait=off], unix:PATH or "
            "file:PATH"]


def console_problems(value: object) -> list[str]:
    if value in CONSOLES:
        return []
    return [f"console {value!r}: write one of {', '.join(CONSOLES)} (where the guest's shell "
            "runs: a virtio console, or its PL011)"]


def machine(cfg: GuestConfig) -> str:
    return cfg.machine + (f",virtio-mmio-irq-lines={cfg.irq_lines}" if cfg.irq_lines > 1 else "")


def command(cfg: GuestConfig) -> list[str]:
    netdev = (f"tap,id=n0,ifname={cfg.tap},script={cfg.tap_script},downscript=no,"
              f"vhost={'on' if cfg.vhost else 'off'}")
    options = dict(cfg.net_options)
    if cfg.queues > 1:
        netdev += f",queues={cfg.queues}"
        options.setdefault("mq", "on")
    device = ",".join([cfg.net_device, "netdev=n0", *(f"{k}={v}" for k, v in options.items())])
    return [
        cfg.qemu, "-enable-kvm", "-M", machine(cfg), "-cpu", "host",
        "-smp", str(cfg.cpus), "-m", cfg.memory,
        "-nodefaults", "-display", "none",
        # Threads named for what they run ("CPU 0/KVM"), so that their CPU time can be told
        # apart on the board (hil/measure/procstat.py).
        "-name", "hil-guest,debug-threads=on",
        *consoles(cfg),
        "-monitor", f"tcp:127.0.0.1:{MONITOR_PORT},server=on,wait=off",
        "-kernel", cfg.kernel, "-initrd", cfg.initrd, "-append", console_args(cfg),
        "-netdev", netdev, "-device", device,
        *cfg.extra,
    ]


def consoles(cfg: GuestConfig) -> list[str]:
    if cfg.console == "uart":
        return ["-serial", cfg.serial]
    if cfg.console not in CONSOLES:
        raise ConfigError(console_problems(cfg.console)[0])
    # One port: without the multiport feature Linux adds the console port while it probes
    # the device, so hvc0 is there when init opens /dev/console; with it (QEMU's default of
    # 31 ports) the port comes later from the control queue, and init may find no console
    # ("unable to open an initial console": its ready line lost).
    return ["-chardev", chardev(cfg.serial), "-serial", f"chardev:{CHARDEV_ID}",
            "-device", "virtio-serial-pci,max_ports=1",
            "-device", f"virtconsole,chardev={CHARDEV_ID}"]


PIDFILE = "/run/hil-vmm.pid"
LOGFILE = "/tmp/hil-vmm.log"


def start_script(cfg: GuestConfig) -> str:
    """A board shell line that starts the VMM in the background and records its pid."""
    return (f"setsid {shlex.join(command(cfg))} </dev/null >{LOGFILE} 2>&1 & "
            f"echo $! >{PIDFILE}")


def stop_script(grace_s: float = 5.0, pidfile: str = PIDFILE) -> str:
    """Stop the VMM: SIGTERM, then SIGKILL if it is still there after `grace_s` (a VMM stuck in
    a vCPU ioctl or on a full chardev ignores SIGTERM). Each wait is bounded: a killed VMM
    that its parent has not reaped yet still answers `kill -0`."""
    polls = int(grace_s * 10)
    alive = "kill -0 $p 2>/dev/null"
    return (f"if [ -f {pidfile} ]; then p=$(cat {pidfile}); kill $p 2>/dev/null; i=0; "
            f"while {alive} && [ $i -lt {polls} ]; do sleep 0.1; i=$((i+1)); done; "
            f"if {alive}; then echo 'hil: the VMM ignored SIGTERM: SIGKILL' >&2; kill -9 $p; "
            f"i=0; while {alive} && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; fi; "
            f"rm -f {pidfile}; fi")


def monitor_script(hmp_command: str) -> str:
    """Send one HMP command to the running VMM's monitor (busybox nc on the board)."""
    return f"echo {shlex.quote(hmp_command)} | nc -w 1 127.0.0.1 {MONITOR_PORT}"


def pin_script(vcpus: int | Sequence[int], others: int, pidfile: str = PIDFILE) -> str:
    """Pin the running VMM's vCPU threads ("CPU n/KVM", named by debug-threads) to board CPU
    `vcpus` (a list: vCPU n to `vcpus[n]`) and its other threads (main loop, iothreads, vhost
    workers) to `others`, then print each thread's allowed CPUs. Where the board's scheduler
    puts the guest's vCPUs and the vhost worker changes what a request/response exchange
    costs; a vCPU the list has no CPU for fails the run."""
    if isinstance(vcpus, int):
        cases = f"'CPU '*) m={1 << vcpus:x};; "
    else:
        cases = "".join(f"'CPU {n}/KVM') m={1 << cpu:x};; " for n, cpu in enumerate(vcpus))
        cases += "'CPU '*) echo \"no board CPU for $(cat $t/comm)\" >&2; exit 1;; "
    return (f"p=$(cat {pidfile}); for t in /proc/$p/task/*; do case \"$(cat $t/comm)\" in "
            f"{cases}*) m={1 << others:x};; esac; "
            f"taskset -p $m ${{t##*/}} >/dev/null || exit 1; {_THREAD_LINE}; done")


# One line per thread of the VMM: its id, name and allowed CPUs.
_THREAD_LINE = ("echo \"${t##*/} $(cat $t/comm | tr ' ' _) "
                "$(grep Cpus_allowed_list $t/status | cut -f2)\"")


def threads_script(pidfile: str = PIDFILE) -> str:
    """Print each thread of the running VMM and its allowed CPUs, as pin_script does after
    pinning: threads started since (QEMU's I/O workers) show up here."""
    return f"p=$(cat {pidfile}); for t in /proc/$p/task/*; do {_THREAD_LINE}; done"


def pin_problems(value: object, board_cpus: int | None) -> list[str]:
    """What is wrong with a board's `pin_vmm: {vcpus: CPU or [CPU, ...], others: CPU}`."""
    if value is None:
        return []
    if not isinstance(value, dict) or set(value) != {"vcpus", "others"}:
        return [f"pin_vmm {value!r}: write {{vcpus: CPU or [CPU, ...], others: CPU}} "
                "(board CPU numbers)"]
    out = []
    vcpus = value["vcpus"]
    listed = vcpus if isinstance(vcpus, list) and vcpus else [vcpus]
    for key, cpu in [*(("vcpus", c) for c in listed), ("others", value["others"])]:
        if not isinstance(cpu, int) or isinstance(cpu, bool) or cpu < 0 or (
                board_cpus is not None and cpu >= board_cpus):
            out.append(f"pin_vmm {key}: {cpu!r} is no CPU of this board "
                       f"(0..{(board_cpus or 1) - 1})")
    return out


def pinned_vcpus(value: Mapping[str, Any] | None) -> int | None:
    """How many vCPUs a pinning places one by one (None: any number, all on one CPU, or no
    pinning)."""
    vcpus = (value or {}).get("vcpus")
    return len(vcpus) if isinstance(vcpus, list) else None
