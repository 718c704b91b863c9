"""The lab-host VM as the virtual lab's lab host for the boards' consoles (`hil lab up
--lab-host vm`).

Each board's two serial cables (hil.virtual_lab.cables: a pty on this host that the board's UART is
relayed to) end in one of QEMU's FTDI adapters in the VM, as a real board's UART ends in a USB
serial adapter on the lab host. labgrid's exporter in the VM exports them as `USBSerialPort`,
the board console matched by its adapter's `ID_SERIAL_SHORT` and the guest console by its
`ID_PATH`, as lab engineers match theirs. The power switch and the TFTP server stay with the
exporter on this host; a place takes its resources from both exporters.

The VM sits behind QEMU's user network, so its exporter runs `--isolated`: clients reach its
ser2net ports through SSH to the lab host, as labgrid does for a lab host behind a gateway.
The VM runs an OpenSSH server (this host's sshd binary, over the VM's 9p root) behind a QEMU
forward on 127.0.0.1, with the lab's key; the lab's ssh drop-in names the VM's host name.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hil.errors import InfrastructureError
from hil.virtual_lab import sshd
from hil.virtual_lab.labhost import exporter
from hil.virtual_lab.labhost.vm import XHCI_PORTS, Adapter, LabHostVM

EXPORTER = "hil-labhost"
ENDS = ("console", "guest")


def host_name(lab_name: str) -> str:
    """The VM's host name, which labgrid publishes as the SSH proxy of its resources."""
    return "hil-labhost-" + (re.sub(r"[^a-z0-9-]+", "-", lab_name.lower()).strip("-") or "lab")


def adapter_serial(board_index: int, end: str) -> str:
    return f"HILV{board_index}{'CON' if end == 'console' else 'GST'}"


def adapters(boards: Sequence[str], devices: dict[str, str]) -> list[Adapter]:
    """An FTDI adapter per cable, on xHCI ports 1, 2, ... in board order; `devices` maps a
    cable name (`<board>-console`, `<board>-guest`) to its pty."""
    if len(boards) * len(ENDS) > XHCI_PORTS:
        raise ValueError(f"the lab-host VM has {XHCI_PORTS} USB ports: at most "
                         f"{XHCI_PORTS // len(ENDS)} boards with --lab-host vm")
    out = []
    for i, board in enumerate(boards):
        for j, end in enumerate(ENDS):
            # QEMU opens the cable's pty as a serial device and holds it for the VM's life.
            out.append(Adapter(adapter_serial(i, end), i * len(ENDS) + j + 1,
                               f"serial,path={devices[f'{board}-{end}']}"))
    return out


def exporter_config(boards: Sequence[str], found: Sequence[Adapter], location: str
                    ) -> dict[str, Any]:
    by_serial = {a.serial: a for a in found}
    groups: dict[str, Any] = {}
    for i, board in enumerate(boards):
        console = by_serial[adapter_serial(i, "console")]
        guest = by_serial[adapter_serial(i, "guest")]
        groups[board] = {
            "location": location,
            "board-console": {"cls": "USBSerialPort", "speed": 115200,
                              "match": {"ID_SERIAL_SHORT": console.serial}},
            "guest-console": {"cls": "USBSerialPort", "speed": 115200,
                              "match": {"ID_PATH": guest.id_path}},
        }
    return groups


def wanted_resources(boards: Sequence[str]) -> set[str]:
    return {f"{EXPORTER}/{b}/NetworkSerialPort" for b in boards}


@dataclass
class LabHost:
    """The VM, its sshd and its exporter, for the boards of one lab."""

    directory: Path  # the VM's work directory (its share is directory/share, /mnt in the VM)
    lab_name: str
    boards: list[str]
    devices: dict[str, str]
    coordinator_port: int
    ssh: sshd.LabSSHServer
    ssh_port: int
    vm: LabHostVM | None = None
    exporter_pid: int | None = None

    @property
    def name(self) -> str:
        return host_name(self.lab_name)

    def start(self) -> float:
        """Boot the VM, start its sshd and exporter; returns the VM's boot time."""
        found = adapters(self.boards, self.devices)
        vm = self.vm = LabHostVM(self.directory, found,
                                 hostfwd=[f"tcp:127.0.0.1:{self.ssh_port}-:22"])
        boot_s = vm.start()
        vm.wait_adapters(len(found))
        share_ssh = vm.share / "ssh"
        share_ssh.mkdir(exist_ok=True)
        for key in ("host_ed25519", "authorized_keys"):
            shutil.copy2(self.ssh.directory / key, share_ssh / key)
        in_vm = Path("/mnt/ssh")
        (share_ssh / "sshd_config").write_text(
            sshd.server_config(in_vm, "0.0.0.0", 22, "root").replace(
                str(in_vm / "sshd.pid"), "/run/sshd-lab.pid"))
        self.ssh.add_alias(self.name, "127.0.0.1", self.ssh_port, "root")
        config = exporter_config(self.boards, found, f"lab-host VM of {self.lab_name}")
        (vm.share / "exporter.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        # labgrid publishes getfqdn() as the proxy: the name must resolve to itself.
        vm.run(f"hostname {self.name} && printf '127.0.0.1 localhost\\n127.0.1.1 %s\\n' "
               f"{self.name} > /tmp/hosts && mount --bind /tmp/hosts /etc/hosts").check()
        vm.run(f"mkdir -p /run/sshd && {sshd.SSHD} -f /mnt/ssh/sshd_config -E /tmp/sshd.log"
               ).check()
        self.exporter_pid = exporter.start(vm, "/mnt/exporter.yaml", self.coordinator_port,
                                           EXPORTER, hostname="localhost", isolated=True)
        return boot_s

    def check_ssh(self) -> None:
        """The VM's sshd answers through the lab's drop-in, as labgrid's proxy will ask it."""
        self.ssh.check(self.name)

    def log(self) -> str:
        if self.vm is None or self.vm.console is None:
            return ""
        try:
            return exporter.log(self.vm)[-1500:]
        except InfrastructureError as e:
            return str(e)

    def stop(self) -> None:
        if self.vm is not None:
            self.vm.stop()
            self.vm = None
