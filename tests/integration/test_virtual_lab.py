"""The virtual lab as a lab: `hil lab up` starts a coordinator, an exporter and two virtual
boards, healthy and tagged; a wrong place or reservation is named before anything is powered.
(test_virtual_lab_release runs both boards at once through the coordinator.)"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.virtual_lab import supervisor as virtual_lab
from hil.virtual_lab.labhost import lab as labhost_lab
from hil.virtual_lab.supervisor import EXPORTER as HOST_EXPORTER
from hil.virtual_lab.supervisor import lab_processes

from .conftest import LAB_SECRET, REPO

LAB_ENV = REPO / "places" / "virtual-lab.yaml"


def client(lab: Any, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """labgrid's own client, with no power credentials in its environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HIL_POWER_CREDENTIALS", "LG_POWER_USER", "LG_POWER_PASSWORD")}
    if user:
        env["LG_USERNAME"] = user
    return subprocess.run([virtual_lab.labgrid_tool("labgrid-client"), "-x",
                           lab.state.coordinator, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def processes_naming(*needles: str) -> list[int]:
    """Every process whose command line names one of `needles`."""
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) != os.getpid()
            and any(n.encode() in cmdline(int(p.name)) for n in needles)]


def running_qemus(directory: Path) -> dict[str, int]:
    """place -> pid of its board's QEMU (the switch only names QEMU in its arguments)."""
    found = {}
    for pid in processes_naming(str(directory)):
        argv = cmdline(pid).split(b"\0")
        if argv[0].endswith(b"qemu-system-aarch64"):
            for place in ("virtual-0", "virtual-1"):
                if any(f"{place}-console.sock".encode() in a for a in argv):
                    found[place] = pid
    return found


def session(lab: Any, results: Path, *reserve: str, cases: str = "testcases/test_board.py",
            extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A pytest session that reserves its place (stdout+stderr in results.log)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    log = open(f"{results}.log", "w")  # noqa: SIM115 (the child writes it)
    # The cases first: --hil-reserve takes every word after it.
    cmd = [sys.executable, "-m", "pytest", *cases.split(), "-p", "no:cacheprovider", "--lg-env",
           str(LAB_ENV), "--hil-results", str(results), *extra,
           *(["--hil-reserve", *reserve] if reserve else [])]
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **lab.env, **(env or {})})


def output(results: Path) -> str:
    return Path(f"{results}.log").read_text(errors="replace")


def test_hil_lab_up_makes_two_healthy_places_with_the_lab_resources(
        virtual_lab: Any, record_property) -> None:
    record_property("lab_up_to_ready_s", virtual_lab.up_s)
    record_property("lab_up_to_healthy_s", round(virtual_lab.healthy_s, 1))
    assert virtual_lab.state.places == ["virtual-0", "virtual-1"]
    for place in virtual_lab.state.places:
        shown = client(virtual_lab, "-p", place, "show")
        assert shown.returncode == 0, shown.stderr
        # One board of each GIC, reserved by tag; both pass the same health check.
        gic = {"virtual-0": "v2", "virtual-1": "v3"}[place]
        assert f"board=virtual, gic={gic}, health=good" in shown.stdout
        consoles = labhost_lab.EXPORTER if virtual_lab.lab_host == "vm" else HOST_EXPORTER
        for resource in ("NetworkSerialPort/board-console", "NetworkSerialPort/guest-console"):
            assert f"{consoles}/{place}/{resource}" in shown.stdout
        for resource in ("NetworkPowerPort/power", "RemoteTFTPProvider/tftp"):
            assert f"{HOST_EXPORTER}/{place}/{resource}" in shown.stdout


def test_a_session_that_reserves_gic_v3_gets_the_gicv3_board_and_its_guest_runs_on_vgic_v3(
        virtual_lab: Any, tmp_path: Path) -> None:
    """One env file for both places: the GIC comes from the place's tag, for the board's
    declared GIC (the board case) and the guest's machine (the guest case)."""
    cases = ("testcases/test_board.py::test_board_runs_its_declared_gic_with_the_vgic_"
             "maintenance_interrupt testcases/test_guest.py::test_guest_boots_nested_under_kvm_"
             "with_the_boards_in_kernel_gic")
    r = session(virtual_lab, tmp_path / "v3", "gic=v3", cases=cases)
    assert r.wait(600) == 0, output(tmp_path / "v3")[-3000:]
    text = output(tmp_path / "v3")
    assert "reservation: holding virtual-1" in text and "2 passed" in text, text[-3000:]


def listening_sockets() -> list[tuple[str, str, int]]:
    """(protocol, local address:port, pid) of every listening TCP and bound UDP socket."""
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        for pid in re.findall(r"pid=(\d+)", line):
            found.append((cols[0], cols[4], int(pid)))
    return found


def test_nothing_the_lab_started_listens_beyond_its_address(virtual_lab: Any) -> None:
    """Every socket of every process of the lab is on 127.0.0.1 (the lab's address without
    --listen), but the TFTP server's, which is on the boards' network alone. (The exporter
    starts a place's ser2net when the place is acquired: virtual-0 is, meanwhile.)"""
    from hil.virtual_lab import boardnet

    holder = "hil-test-sockets"
    assert client(virtual_lab, "-p", "virtual-0", "acquire", user=holder).returncode == 0
    try:
        client(virtual_lab, "-p", "virtual-0", "set-tags", f"hil-lease={int(time.time())}+600",
               user=holder)
        deadline = time.monotonic() + 30
        while True:
            kinds = lab_processes(virtual_lab.directory)
            mine = [(proto, local, kinds[pid]) for proto, local, pid in listening_sockets()
                    if pid in kinds]
            relays = [kind for _, _, kind in mine if kind == "ser2net"]
            if virtual_lab.lab_host != "local" or len(relays) == 2 or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        client(virtual_lab, "-p", "virtual-0", "set-tags", "hil-lease=", user=holder)
        client(virtual_lab, "-p", "virtual-0", "release", user=holder)
    by_kind = {kind for _, _, kind in mine}
    assert {"labgrid-coordinator", "hil.virtual_lab.power.switch", "hil.virtual_lab.power.relay", "sshd",
            "in.tftpd"} <= by_kind, mine
    if virtual_lab.lab_host == "local":
        assert len(relays) == 2, mine  # virtual-0's board and guest consoles
    # The janitor's metrics are among them, and count the lab's two places.
    from hil.scheduling import metrics
    metrics_port = virtual_lab.state.metrics.rsplit(":", 1)[1].split("/")[0]
    assert any(local.endswith(f":{metrics_port}") for _, local, _ in mine), mine
    assert sum(metrics.fetch(virtual_lab.state.metrics).places.values()) == 2
    for proto, local, kind in mine:
        address = local.rsplit(":", 1)[0].removeprefix("[::ffff:").rstrip("]")
        if kind == "in.tftpd":
            assert (proto, local) == ("udp", f"{boardnet.HOST_ADDRESS}:69"), mine
        else:
            assert address == "127.0.0.1", (proto, local, kind)


def test_a_board_shell_reaches_the_labs_tftp_server_and_not_the_coordinator(
        virtual_lab: Any, tmp_path: Path) -> None:
    """From virtual-0's shell, over the board's own NIC: a port that listens in the boards'
    network (10.0.2.2 to the board) and a file from the lab's TFTP server are reached; the
    coordinator is not, as 10.0.2.2, at its own address, nor at this host's others."""
    from hil.labgrid.driver.tftpserver import primary_ipv4

    holder = virtual_lab.state.pids["boardnet"]
    listener = subprocess.Popen(
        ["nsenter", f"--net=/proc/{holder}/ns/net", sys.executable, "-c",
         "import socket; s = socket.create_server(('127.0.0.1', 0)); "
         "print(s.getsockname()[1], flush=True)\nwhile True: s.accept()[0].close()"],
        stdout=subprocess.PIPE, text=True)
    probe = virtual_lab.directory / "tftp" / "virtual-0" / "hil-probe.txt"
    try:
        assert listener.stdout is not None
        port = listener.stdout.readline().strip()
        probe.write_text("hil-probe\n")
        r = session(virtual_lab, tmp_path / "net", "name=virtual-0",
                    cases="tests/integration/lab_cases/board_network.py",
                    env={"HIL_PROBE_PORT": port, "HIL_PROBE_FILE": str(probe),
                         "HIL_HOST_PRIMARY": primary_ipv4()})
        assert r.wait(600) == 0, output(tmp_path / "net")[-3000:]
        assert "2 passed" in output(tmp_path / "net"), output(tmp_path / "net")[-3000:]
    finally:
        listener.kill()
        probe.unlink(missing_ok=True)


def console_shows_the_board(lab: Any, user: str, timeout: float = 90) -> bool:
    """`labgrid-client console` (microcom over the exporter's ser2net) prints what the board's
    U-Boot and kernel print after power-on."""
    import pty

    from pexpect import EOF, TIMEOUT
    from pexpect.fdpexpect import fdspawn

    env = {**os.environ, "LG_USERNAME": user}
    # On a terminal, but started by subprocess (vfork), not pexpect.spawn (fork): this process
    # runs gRPC clients, and a fork while one of their threads is in gRPC's core can abort the
    # child before its exec ("skipping fork() handlers", then "epoll_wait error: Bad file
    # descriptor"; CI 2026-12-06; labgrid PR #1905).
    master, slave = pty.openpty()
    client_process = subprocess.Popen(
        [virtual_lab.labgrid_tool("labgrid-client"), "-x", lab.state.coordinator,
         "-p", "virtual-1", "console", "board-console"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    con = fdspawn(master, encoding="utf-8", codec_errors="replace", timeout=timeout)
    try:
        try:
            seen = con.expect([r"autoboot|Loading|TFTP|Starting kernel|hil-board|=> ",
                               EOF, TIMEOUT]) == 0
        except OSError:  # EIO: the client exited and its terminal closed
            seen = False
        assert seen, f"labgrid-client console showed: {con.before!r}"
        return seen
    finally:
        client_process.kill()
        client_process.wait()
        os.close(master)


def test_labgrids_own_client_switches_a_held_place_and_no_one_elses(virtual_lab: Any) -> None:
    """`labgrid-client power` with no credentials (the lab's relay holds them) and
    `labgrid-client console`: the holder switches the board and sees it boot; another user is
    refused both by labgrid-client."""
    lease = f"hil-lease={int(time.time())}+600"  # the janitor leaves a leased lock alone
    me, other = "hil-test-holder", "hil-test-other"
    assert client(virtual_lab, "-p", "virtual-1", "acquire", user=me).returncode == 0
    try:
        assert client(virtual_lab, "-p", "virtual-1", "set-tags", lease, user=me).returncode == 0
        states = []
        for command in ("off", "get", "on", "get", "console", "cycle", "get", "off", "get"):
            if command == "console":
                assert "virtual-1" in running_qemus(virtual_lab.directory)
                assert console_shows_the_board(virtual_lab, me), "no board output on console"
                continue
            r = client(virtual_lab, "-p", "virtual-1", "power", command, user=me)
            assert r.returncode == 0, (command, r.stdout + r.stderr)
            if command == "get":
                states.append(r.stdout.strip().rsplit(" ", 1)[-1])
        assert states == ["off", "on", "on", "off"], states
        for refused_command in (("power", "on"), ("console", "board-console")):
            refused = client(virtual_lab, "-p", "virtual-1", *refused_command, user=other)
            assert refused.returncode != 0 and "acquired" in refused.stderr, refused.stderr
        assert "virtual-1" not in running_qemus(virtual_lab.directory)
    finally:
        client(virtual_lab, "-p", "virtual-1", "power", "off", user=me)
        client(virtual_lab, "-p", "virtual-1", "set-tags", "hil-lease=", user=me)
        assert client(virtual_lab, "-p", "virtual-1", "release", user=me).returncode == 0


def leaks_of_the_planted_secret(lab: Any, *roots: Path) -> list[str]:
    """Where the switch's password shows up: the coordinator's view of the places, and every
    file under `roots` and the lab's directory (outputs, results, consoles, JUnit, logs)."""
    outputs = [client(lab, "-p", p, "show").stdout for p in lab.state.places]
    for root in [*roots, lab.directory]:
        for f in root.rglob("*"):
            if f.is_file() and not f.is_socket() and f != lab.creds:
                outputs.append(f.read_bytes().decode(errors="replace"))
    return [o[max(0, o.find(LAB_SECRET) - 200):o.find(LAB_SECRET) + 50]
            for o in outputs if LAB_SECRET in o]


def test_an_unknown_place_is_named_before_anything_is_powered(
        virtual_lab: Any, tmp_path: Path) -> None:
    before = running_qemus(virtual_lab.directory)
    r = session(virtual_lab, tmp_path / "r", env={"LG_PLACE": "no-such-board"})
    assert r.wait(120) == 4, output(tmp_path / "r")[-3000:]
    text = output(tmp_path / "r")
    assert "place 'no-such-board' is not on the coordinator" in text
    assert running_qemus(virtual_lab.directory) == before


def test_a_reservation_for_a_place_that_does_not_exist_is_a_usage_error(
        virtual_lab: Any, tmp_path: Path) -> None:
    r = session(virtual_lab, tmp_path / "r", "board=virtual", "name=$(reboot)")
    assert r.wait(60) == 4
    assert "a reservation filter is tag=value" in output(tmp_path / "r")


def test_the_same_place_can_be_reserved_again_after_a_session(virtual_lab: Any) -> None:
    # Nothing of the sessions above is left on the coordinator.
    for place in virtual_lab.state.places:
        shown = client(virtual_lab, "-p", place, "show").stdout
        assert "acquired: None" in shown and "hil-lease" not in shown
    assert "state: waiting" not in client(virtual_lab, "reservations").stdout


def test_a_tftp_server_that_does_not_answer_is_named_before_anything_is_powered(
        virtual_lab: Any, tmp_path: Path) -> None:
    """The place's strategy is told a TFTP server where none runs: the run ends inconclusive,
    naming it, and the board was never switched on. (virtual-1: the health check that follows
    an infrastructure error is over before the next test that needs it.)"""
    text = LAB_ENV.read_text()
    assert "          serverip: 10.231.69.1\n" in text
    env = tmp_path / "env.yaml"
    env.write_text(text.replace("          serverip: 10.231.69.1\n",
                                "          serverip: 127.0.0.9\n"))
    log = tmp_path / "r.log"
    start = datetime.now()
    with open(log, "w") as out:
        r = subprocess.run([sys.executable, "-m", "pytest", "testcases/test_board.py",
                            "-p", "no:cacheprovider", "--lg-env", str(env), "--hil-results",
                            str(tmp_path / "r"), "--hil-reserve", "name=virtual-1"],
                           cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, **virtual_lab.env}, timeout=300)
    end = datetime.now()
    text = log.read_text(errors="replace")
    assert r.returncode == 2, text[-3000:]
    assert "the TFTP server at 127.0.0.9:69, where U-Boot would load the images from, does " \
           "not answer" in text, text[-3000:]
    # No outlet was switched on while the run lasted. (The place is health-checked after it,
    # as after any infrastructure error: that powers it.)
    switch_log = (virtual_lab.directory / "logs" / "power-switch.log").read_text()
    assert [ln for ln in switch_log.splitlines() if " on: pid " in ln
            and start <= datetime.strptime(ln[:23], "%Y-%m-%d %H:%M:%S,%f") <= end] == []
    # The health check that follows an infrastructure error finds the place good again (the
    # lab's TFTP server was fine all along); the next tests want both places.
    health = virtual_lab_health(virtual_lab, "virtual-1", timeout=400)
    assert health == "good", health


def virtual_lab_health(lab: Any, place: str, timeout: float) -> str:
    from hil.scheduling.coordinator import Coordinator

    deadline = time.monotonic() + timeout
    with Coordinator(lab.state.coordinator, purpose="test") as c:
        while True:
            p = c.place(place)
            health = p.tags.get("health", "unknown")
            if (health != "unknown" and p.acquired is None) or time.monotonic() > deadline:
                return f"{health}: {p.comment}" if health != "good" else health
            time.sleep(2)


def resources_of(lab: Any, place: str) -> dict[str, dict[str, Any]]:
    """`labgrid-client -p PLACE show`: resource name -> (exporter path, its dict)."""
    shown = client(lab, "-p", place, "show").stdout
    return {m["name"]: {"path": m["path"], **ast.literal_eval(m["body"])} for m in re.finditer(
        r"^(?:Matching|Acquired) resource '(?P<name>[^']+)' \((?P<path>[^)]+)\):\n(?P<body>  \{.*?\})$",
        shown, re.MULTILINE | re.DOTALL)}


def on_lab_host(lab: Any, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command on the lab-host VM, over SSH as labgrid's proxy reaches it."""
    return subprocess.run(["ssh", "-o", "BatchMode=yes",
                           labhost_lab.host_name(lab.directory.name), command],
                          capture_output=True, text=True, timeout=timeout)


def test_the_consoles_are_the_lab_hosts_ftdi_adapters_matched_by_udev(virtual_lab: Any) -> None:
    """Each place's consoles are USB serial adapters of the lab-host VM, exported by the
    labgrid exporter there and found by udev: the board console by ID_SERIAL_SHORT, the guest
    console by ID_PATH. (The health checks and every session above went through them.)"""
    if virtual_lab.lab_host != "vm":
        pytest.skip("HIL_LAB_HOST=local: the consoles are this host's ptys")
    host = labhost_lab.host_name(virtual_lab.directory.name)
    config = yaml.safe_load(
        (virtual_lab.directory / "labhost" / "share" / "exporter.yaml").read_text())
    for i, place in enumerate(virtual_lab.state.places):
        res = resources_of(virtual_lab, place)
        assert res["power"]["path"].startswith(f"{HOST_EXPORTER}/{place}/")
        consoles = {}
        for name in ("board-console", "guest-console"):
            r = res[name]
            assert r["path"] == f"{labhost_lab.EXPORTER}/{place}/NetworkSerialPort/{name}", r
            assert r["avail"] and r["params"]["extra"]["proxy"] == host, r
            assert r["params"]["extra"]["proxy_required"] is True, r
            consoles[name] = r["params"]["extra"]["path"]
        props = {}
        for name, dev in consoles.items():
            q = on_lab_host(virtual_lab, f"udevadm info --query=property --name={dev}")
            assert q.returncode == 0, q.stderr
            props[name] = dict(ln.split("=", 1) for ln in q.stdout.splitlines() if "=" in ln)
            assert props[name]["ID_USB_DRIVER"] == "ftdi_sio", props[name]
        assert props["board-console"]["ID_SERIAL_SHORT"] == \
            labhost_lab.adapter_serial(i, "console")
        assert config[place]["board-console"]["match"] == \
            {"ID_SERIAL_SHORT": labhost_lab.adapter_serial(i, "console")}
        assert config[place]["guest-console"]["match"] == \
            {"ID_PATH": props["guest-console"]["ID_PATH"]}
    # The lab host's own cabling check agrees: every match resolves to exactly one adapter.
    hil = f"PYTHONPATH={REPO} {sys.executable} -m hil.cli"
    q = on_lab_host(virtual_lab, f"{hil} lab check /mnt/exporter.yaml")
    assert q.returncode == 0, q.stdout + q.stderr
    assert "all resolve" in q.stdout.splitlines()[-1], q.stdout
