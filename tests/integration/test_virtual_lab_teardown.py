"""`hil lab down` leaves nothing behind: no process, port, tty relay, ssh drop-in or file.
(Runs after the other test_virtual_lab* modules, on their lab.)"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from typing import Any

import yaml

from hil.virtual_lab import sshd

from .test_virtual_lab import processes_naming


def test_hil_lab_down_leaves_nothing_behind(virtual_lab: Any) -> None:
    state, directory = virtual_lab.state, virtual_lab.directory
    ports = [int(url.rsplit(":", 1)[1]) for url in (state.coordinator, state.switch, state.relay)]
    assert processes_naming(str(directory))
    # ser2net (or the lab-host VM's QEMU) names only the cable's tty: ask for those by name.
    ttys = [f"{res['port']},"
            for group in yaml.safe_load((directory / "exporter.yaml").read_text()).values()
            for res in group.values() if isinstance(res, dict) and res.get("cls") == "RawSerialPort"]
    if virtual_lab.lab_host == "vm":
        ttys = [f"{tty}," for tty in re.findall(
            r"serial,path=(/dev/pts/\d+)", (directory / "labhost" / "qemu.cmd").read_text())]
    assert len(ttys) == 4
    r = subprocess.run([sys.executable, "-m", "hil.cli", "lab", "down", "--dir", str(directory)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert processes_naming(str(directory)) == []
    assert processes_naming(*ttys) == []
    assert not directory.exists()
    assert not sshd.dropin_path(directory).exists()
    assert not sshd.authorized_keys_path(directory).exists()
    # The boards' network went with its holder: no veth is left on this host.
    from hil.virtual_lab import boardnet

    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert boardnet.veth_name(directory) not in links
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    # Port 69 is free again for the next lab or U-Boot board.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((state.address, 69))


def test_down_after_a_killed_supervisor_ends_every_process_the_lab_started(
        tmp_path_factory: Any, built_images: Any) -> None:
    """Runs after the shared lab is down (port 69 is free again)."""
    import os
    import signal
    import time

    from hil.virtual_lab import supervisor as vl

    directory = tmp_path_factory.mktemp("killed") / "lab"
    state = vl.up(directory, 1, out=lambda _: None, wait_healthy=180)
    try:
        # The janitor's health check has ended (and powered the board off again): power it on
        # through the switch, as a holder would, so that its QEMU is among the lab's processes
        # when the supervisor dies.
        from labgrid.driver.power import rest

        exported = yaml.safe_load((directory / "exporter.yaml").read_text())
        (power,) = [res for group in exported.values() for res in group.values()
                    if isinstance(res, dict) and res.get("cls") == "NetworkPowerPort"]

        def connected() -> int:
            return (directory / "supervisor.log").read_text().count(": board connected")

        before = connected()
        rest.power_set(power["host"], None, power["index"], True)  # through the lab's relay
        # Until its QEMU has connected both cables (the supervisor says so in its log): one
        # still starting when the supervisor, which holds the cables, dies would fail to
        # connect and exit.
        deadline = time.monotonic() + 30
        while connected() < before + 2:
            assert time.monotonic() < deadline, (
                vl.lab_processes(directory),
                (directory / "logs" / "outlet-1.log").read_text(errors="replace")[-1500:])
            time.sleep(0.2)
        assert "qemu-system-aarch64" in vl.lab_processes(directory).values()
        os.kill(state.pid, signal.SIGKILL)
        time.sleep(1)
        left = sorted(vl.lab_processes(directory).values())
        for kind in ("in.tftpd", "labgrid-coordinator", "labgrid-exporter", "hil-boardnet",
                     "hil.virtual_lab.power.switch", "hil.virtual_lab.power.relay", "qemu-system-aarch64",
                     "sshd"):
            assert kind in left, left
        said: list[str] = []
        vl.down(directory, out=said.append)
        assert vl.lab_processes(directory) == {}
        assert any("ended what the supervisor left running" in line for line in said), said
        assert not directory.exists()
    finally:
        if directory.exists():
            vl.down(directory, out=lambda _: None)
