"""The lab-host VM: Debian's amd64 kernel under TCG (Debian's kernel dies under this machine's
KVM), an xHCI controller with QEMU's FTDI `usb-serial` adapters, this host's root over 9p and
its systemd-udevd, controlled over its serial console."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from labgrid.util import Timeout

from hil.errors import InfrastructureError
from hil.virtual_lab.labhost import initramfs, packages
from hil.virtual_lab.labhost.console import Console, Result

QEMU = "qemu-system-x86_64"
# The xHCI controller's fixed PCI slot, so that ID_PATH is known before boot.
XHCI_SLOT = 0x10
XHCI_PORTS = 4  # USB 2 root ports (usb-serial is a full-speed device)


@dataclass(frozen=True)
class Adapter:
    """One emulated FTDI adapter: its USB serial number, its xHCI root port (1-4) and the
    QEMU chardev backend its UART is wired to (without `id=`), e.g. `file,path=/tmp/x` or
    `socket,path=/tmp/board.sock` (a board's console listening there). QEMU plugs the
    adapter into the xHCI port only while its chardev is connected: a socket chardev that
    QEMU serves itself (`server=on`) leaves the adapter unplugged until someone connects."""

    serial: str
    port: int
    chardev: str

    @property
    def id_path(self) -> str:
        """udev's ID_PATH of its tty (interface 0 of the device on that root port)."""
        return f"pci-0000:00:{XHCI_SLOT:02x}.0-usb-0:{self.port}:1.0"


def _check_adapters(adapters: Sequence[Adapter]) -> None:
    ports = [a.port for a in adapters]
    if len(set(ports)) != len(ports):
        raise ValueError(f"two adapters on one xHCI port: {ports}")
    for a in adapters:
        if not 1 <= a.port <= XHCI_PORTS:
            raise ValueError(f"adapter {a.serial}: port {a.port} is not 1-{XHCI_PORTS}")
        if not a.serial or any(c in a.serial for c in ",= \t\n"):
            raise ValueError(f"adapter serial {a.serial!r}: no commas, '=' or blanks")


class LabHostVM:
    """Boot with start() (or `with`), run commands with run(), stop with stop().

    `workdir` holds the initramfs, the console socket and log, and `share/`, which the VM
    mounts read-write at /mnt. `hostfwd` are QEMU user-network forwards
    (`tcp:127.0.0.1:HOSTPORT-:GUESTPORT`).
    """

    def __init__(self, workdir: Path, adapters: Sequence[Adapter], *, memory_mb: int = 1024,
                 hostfwd: Sequence[str] = (), nice: int = 10,
                 kernel: packages.Kernel | None = None) -> None:
        _check_adapters(adapters)
        self.workdir = workdir
        self.adapters = list(adapters)
        self.memory_mb = memory_mb
        self.hostfwd = list(hostfwd)
        self.nice = nice
        self.kernel = kernel
        self.share = workdir / "share"
        self.console_sock = workdir / "console.sock"
        self.console_log = workdir / "console.log"
        self.monitor_sock = workdir / "monitor.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.console: Console | None = None
        self.boot_s: float | None = None
        self.guest_uptime_s: float | None = None
        # This checkout, its venv and the venv's Python, and what of this host's top level
        # is not a link into /usr: the VM's root holds nothing else of this host.
        self.host_paths = initramfs.shared_host_paths(
            [Path(__file__).resolve().parents[3], Path(sys.prefix), Path(sys.base_prefix),
             *initramfs.root_links()[1]])
        self.etc = workdir / "etc"

    def command(self, kernel: packages.Kernel, initrd: Path) -> list[str]:
        netdev = ",".join(["user,id=net0", *(f"hostfwd={f}" for f in self.hostfwd)])
        cmd = [
            "nice", "-n", str(self.nice), QEMU,
            "-machine", "pc,accel=tcg", "-smp", "1", "-m", str(self.memory_mb),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(kernel.image), "-initrd", str(initrd),
            "-append", "console=ttyS0 loglevel=4 panic=-1",
            "-chardev", f"socket,id=con0,path={self.console_sock},server=on,wait=off,"
                        f"logfile={self.console_log}",
            "-serial", "chardev:con0",
            "-monitor", f"unix:{self.monitor_sock},server=on,wait=off",
            # First, so that no automatically placed device takes its slot.
            "-device", f"qemu-xhci,id=xhci,addr={XHCI_SLOT:#x},p2={XHCI_PORTS},p3={XHCI_PORTS}",
            "-virtfs", f"local,path=/usr,mount_tag={initramfs.USR_TAG},security_model=none,"
                       "readonly=on",
            "-virtfs", f"local,path={self.etc},mount_tag={initramfs.ETC_TAG},"
                       "security_model=none,readonly=on",
            "-virtfs", f"local,path={self.share},mount_tag={initramfs.SHARE_TAG},"
                       "security_model=none",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile=",
        ]
        for i, p in enumerate(self.host_paths):
            cmd += ["-virtfs", f"local,path={p},mount_tag={initramfs.HOST_PATH_TAG.format(i)},"
                               "security_model=none,readonly=on"]
        for i, a in enumerate(self.adapters):
            cmd += ["-chardev", f"{a.chardev},id=usb{i}",
                    "-device", f"usb-serial,bus=xhci.0,port={a.port},chardev=usb{i},"
                               f"serial={a.serial}"]
        return cmd

    def start(self, timeout: float = 180.0) -> float:
        """Boot to the console shell with udev settled; returns seconds from QEMU's start."""
        kernel = self.kernel or packages.ensure()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.share.mkdir(exist_ok=True)
        initramfs.etc_view(self.etc)
        self.console_sock.unlink(missing_ok=True)
        self.monitor_sock.unlink(missing_ok=True)
        initrd = initramfs.build(kernel, self.workdir / "initramfs.cpio", self.host_paths)
        cmd = self.command(kernel, initrd)
        (self.workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
        t0 = time.monotonic()
        with open(self.workdir / "qemu.out", "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.console = Console(self.console_sock)
            m = self.console.expect(rf"{initramfs.READY} ([0-9.]+)\r?\n".encode(), timeout)
        except InfrastructureError as e:
            qemu_out = (self.workdir / "qemu.out").read_text(errors="replace")[-2000:]
            self.stop()
            raise InfrastructureError(f"{e}\nQEMU: {qemu_out}") from e
        self.boot_s = time.monotonic() - t0
        self.guest_uptime_s = float(m[1])
        return self.boot_s

    def run(self, command: str, timeout: float = 120.0) -> Result:
        if self.console is None:
            raise InfrastructureError("lab-host VM is not running")
        return self.console.run(command, timeout)

    def wait_adapters(self, count: int, timeout: float = 30.0) -> list[str]:
        """Wait until the kernel has `count` USB serial ports and udev has settled on them
        (a hub enumerates asynchronously); their tty names."""
        deadline = Timeout(float(timeout))
        while True:
            names = self.run("ls /sys/bus/usb-serial/devices").check().output.split()
            if len(names) >= count:
                break
            if deadline.expired:
                raise InfrastructureError(
                    f"lab-host VM: {len(names)} of {count} USB serial adapters after "
                    f"{timeout:.0f} s (is each adapter's chardev connected?)")
            time.sleep(0.5)
        self.run("udevadm settle --timeout=30").check()
        return sorted(names)

    def monitor(self, command: str, timeout: float = 10.0) -> str:
        """One HMP command on QEMU's monitor; its answer."""
        if self.proc is None:
            raise InfrastructureError("lab-host VM is not running")
        mon = Console(self.monitor_sock, connect_timeout=timeout)
        try:
            mon.expect(rb"\(qemu\) ", timeout)
            mon.send(command + "\n")
            return mon.expect(rb"(?s)\r?\n(.*?)\(qemu\) ", timeout)[1].decode(errors="replace")
        finally:
            mon.close()

    def forward(self, host_port: int, guest_port: int, host_address: str = "127.0.0.1") -> None:
        """Forward host_address:host_port on this host to the VM's guest_port (TCP), e.g. to a
        ser2net port that labgrid's exporter picked inside the VM."""
        answer = self.monitor(f"hostfwd_add net0 tcp:{host_address}:{host_port}-:{guest_port}")
        if answer.strip():
            raise InfrastructureError(f"lab-host VM: hostfwd {host_port}->{guest_port}: {answer}")

    def stop(self) -> None:
        if self.console is not None:
            self.console.close()
            self.console = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self.console_sock.unlink(missing_ok=True)

    def __enter__(self) -> LabHostVM:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
