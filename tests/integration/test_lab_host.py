"""The lab-host VM (hil/virtual_lab/labhost/): Debian's amd64 kernel with udev and QEMU's emulated FTDI
adapters, so that `hil lab check` and labgrid's exporter meet real udev devices.

Four adapters on known xHCI ports: HILBRD01 and HILBRD02, and two that share HILDUP01 (told apart
only by ID_PATH). The exporter file also names HILBRD03, which is not plugged in.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from hil.ports import free_port
from hil.virtual_lab.labhost import exporter
from hil.virtual_lab.labhost.vm import Adapter, LabHostVM
from hil.virtual_lab.supervisor import labgrid_tool

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable  # the same path inside the VM (the host's root over 9p)
HIL = f"PYTHONPATH={REPO} {PYTHON} -m hil.cli"


class Uart:
    """The board's end of one adapter: it listens on a unix socket and QEMU connects to it (a
    usb-serial adapter is plugged in only while its chardev is connected)."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.sock: socket.socket | None = None
        self.received = b""

    def _conn(self) -> socket.socket:
        if self.sock is None:
            self.server.settimeout(30)
            self.sock, _ = self.server.accept()
            self.sock.setblocking(False)
        return self.sock

    def poll(self) -> bytes:
        sock = self._conn()
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return self.received
            if not data:
                return self.received
            self.received += data

    def send(self, data: bytes) -> None:
        sock = self._conn()
        sock.setblocking(True)
        sock.sendall(data)
        sock.setblocking(False)

    def close(self) -> None:
        for s in (self.sock, self.server):
            if s is not None:
                s.close()


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def uart_dir() -> Iterator[Path]:
    # Short: a unix socket path has at most 107 bytes.
    d = Path(tempfile.mkdtemp(prefix="hil-uart-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def uarts(uart_dir: Path) -> Iterator[dict[int, Uart]]:
    """The boards' ends of the adapters, by xHCI port, listening before the VM starts."""
    ends = {port: Uart(uart_dir / f"port{port}") for port in (1, 2, 3, 4)}
    yield ends
    for u in ends.values():
        u.close()


@pytest.fixture(scope="module")
def adapters(uart_dir: Path, uarts: dict[int, Uart]) -> list[Adapter]:
    spec = [("HILBRD01", 1), ("HILBRD02", 2), ("HILDUP01", 3), ("HILDUP01", 4)]
    return [Adapter(s, port, f"socket,path={uart_dir}/port{port}") for s, port in spec]


@pytest.fixture(scope="module")
def labhost(tmp_path_factory: pytest.TempPathFactory, adapters: list[Adapter]) -> Iterator[LabHostVM]:
    vm = LabHostVM(tmp_path_factory.mktemp("labhost"), adapters)
    vm.start()
    print(f"lab-host VM: shell with udev settled {vm.boot_s:.1f} s after QEMU started "
          f"(guest uptime {vm.guest_uptime_s:.1f} s)")
    try:
        yield vm
    finally:
        vm.stop()


def _properties(text: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)


@pytest.fixture(scope="module")
def ttys(labhost: LabHostVM, adapters: list[Adapter]) -> dict[str, dict[str, str]]:
    """Every /dev/ttyUSB* in the VM with its udev properties."""
    labhost.wait_adapters(len(adapters))
    names = labhost.run("cd /dev && ls -1 ttyUSB*").check().output.split()
    return {n: _properties(labhost.run(f"udevadm info --query=property --name=/dev/{n}")
                           .check().output) for n in names}


def _serial_ttys(ttys: dict[str, dict[str, str]], serial: str) -> list[str]:
    return sorted(n for n, p in ttys.items() if p.get("ID_SERIAL_SHORT") == serial)


def test_udev_names_every_adapter(labhost: LabHostVM, adapters: list[Adapter],
                                  ttys: dict[str, dict[str, str]],
                                  record_property: pytest.RecordProperty) -> None:
    record_property("labhost_boot_s", round(labhost.boot_s or 0, 2))
    assert len(ttys) == len(adapters), ttys
    seen = {(p.get("ID_SERIAL_SHORT"), p.get("ID_PATH")) for p in ttys.values()}
    assert seen == {(a.serial, a.id_path) for a in adapters}
    for props in ttys.values():
        assert props.get("ID_VENDOR_ID") == "0403" and props.get("ID_USB_DRIVER") == "ftdi_sio", props


def _write_exporter(labhost: LabHostVM, adapters: list[Adapter], name: str,
                    with_faults: bool) -> str:
    brd2 = next(a for a in adapters if a.serial == "HILBRD02")
    data: dict[str, object] = {
        "brd1": {"console": {"cls": "USBSerialPort", "match": {"ID_SERIAL_SHORT": "HILBRD01"}}},
        "brd2": {"console": {"cls": "USBSerialPort", "match": {"ID_PATH": brd2.id_path}}},
    }
    if with_faults:
        data["dup"] = {"console": {"cls": "USBSerialPort", "match": {"ID_SERIAL_SHORT": "HILDUP01"}}}
        data["gone"] = {"console": {"cls": "USBSerialPort", "match": {"ID_SERIAL_SHORT": "HILBRD03"}}}
    (labhost.share / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return f"/mnt/{name}"  # the share, as the VM sees it


def _headline(output: str, label: str) -> str:
    lines = [ln for ln in output.splitlines() if re.match(rf"\S+\s+{re.escape(label)} ", ln)]
    assert len(lines) == 1, output
    return lines[0]


def _block(output: str, label: str) -> list[str]:
    """A resource's headline and its indented lines."""
    lines = output.splitlines()
    start = lines.index(_headline(output, label))
    block = [lines[start]]
    for ln in lines[start + 1:]:
        if not ln.startswith("    "):
            break
        block.append(ln)
    return block


def test_lab_check_in_the_lab_host(labhost: LabHostVM, adapters: list[Adapter],
                                   ttys: dict[str, dict[str, str]]) -> None:
    path = _write_exporter(labhost, adapters, "faulty.yaml", with_faults=True)
    r = labhost.run(f"{HIL} lab check {path}", timeout=300)
    out = r.output
    print(out)
    assert r.rc == 2, out  # not every match resolves

    # The distinct adapters: exactly one device each, the one udev gives that serial / path.
    ok1 = _headline(out, "brd1/console")
    assert ok1.startswith("OK ") and ok1.endswith(": " + _serial_ttys(ttys, "HILBRD01")[0]), out
    ok2 = _headline(out, "brd2/console")
    assert ok2.startswith("OK ") and ok2.endswith(": " + _serial_ttys(ttys, "HILBRD02")[0]), out

    # The shared serial: ambiguous, both devices named, each with the ID_PATH that picks it.
    dup = _block(out, "dup/console")
    both = _serial_ttys(ttys, "HILDUP01")
    assert len(both) == 2
    assert dup[0].startswith("AMBIGUOUS ") and f"2 devices fit ({', '.join(both)})" in dup[0], out
    for tty in both:
        fix = [ln for ln in dup[1:] if ln.strip().startswith(f"{tty}:")]
        assert len(fix) == 1, out
        assert f"ID_PATH: '{ttys[tty]['ID_PATH']}'" in fix[0].split("->", 1)[1], out
    dup_paths = {a.id_path for a in adapters if a.serial == "HILDUP01"}
    assert {ttys[t]["ID_PATH"] for t in both} == dup_paths

    # The adapter that is not plugged in: missing, by its match.
    gone = _headline(out, "gone/console")
    assert gone.startswith("MISSING ") and "HILBRD03" in gone, out
    assert "no device fits" in gone, out


def test_lab_check_passes_when_every_match_resolves(labhost: LabHostVM,
                                                    adapters: list[Adapter]) -> None:
    path = _write_exporter(labhost, adapters, "good.yaml", with_faults=False)
    r = labhost.run(f"{HIL} lab check {path}", timeout=300)
    assert r.rc == 0, r.output
    assert "all resolve" in r.output.splitlines()[-1], r.output


def test_bytes_written_to_a_tty_reach_its_adapters_chardev(
        labhost: LabHostVM, adapters: list[Adapter], ttys: dict[str, dict[str, str]],
        uarts: dict[int, Uart]) -> None:
    """Each /dev/ttyUSB* in the VM is one of QEMU's adapters: what the VM writes to it comes
    out of that adapter's chardev on this host, and out of no other."""
    by_path = {a.id_path: a for a in adapters}
    sent = {}
    for tty, props in sorted(ttys.items()):
        adapter = by_path[props["ID_PATH"]]
        probe = f"hil-probe-{tty}-{adapter.serial}-{time.monotonic_ns()}"
        labhost.run(f"stty -F /dev/{tty} 115200 raw -echo && printf '%s\\n' {probe} > /dev/{tty}"
                    ).check()
        sent[adapter.port] = probe.encode()
    _wait_for("the probes on the adapters' chardevs",
              lambda: all(sent[p] in uarts[p].poll() for p in sent))
    for port, probe in sent.items():
        assert all(probe not in uarts[p].poll() for p in uarts if p != port)


# --- labgrid's exporter in the lab host, its coordinator on this host --------------------------

EXPORTER = "hil-labhost-vm"


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """labgrid-coordinator on 127.0.0.1 (the VM's 10.0.2.2); yields its port."""
    port = free_port()
    d = tmp_path_factory.mktemp("coordinator")
    with open(d / "coordinator.log", "wb") as log:
        proc = subprocess.Popen([labgrid_tool("labgrid-coordinator"), "--listen",
                                 f"127.0.0.1:{port}"], cwd=d, stdout=log, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        _wait_for("labgrid-coordinator", listening)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _client(port: int, *args: str, check: bool = True) -> str:
    p = subprocess.run([labgrid_tool("labgrid-client"), "-x", f"127.0.0.1:{port}", *args],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr
    return p.stdout


def _resources(text: str) -> dict[str, dict[str, object]]:
    """`labgrid-client -v resources` -> {exporter/group/name: the resource's dict}."""
    out: dict[str, dict[str, object]] = {}
    head = re.compile(r"^    Resource '(?P<name>[^']+)' \((?P<exp>[^/]+)/(?P<group>[^/]+)/")
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        m = head.match(ln)
        if m:
            body = []
            for nxt in lines[i + 1:]:
                if not nxt.startswith("      "):
                    break
                body.append(nxt)
            out[f"{m['exp']}/{m['group']}/{m['name']}"] = ast.literal_eval("\n".join(body).strip())
    return out


@pytest.fixture(scope="module")
def exported(labhost: LabHostVM, adapters: list[Adapter],
             coordinator: int) -> Iterator[dict[str, dict[str, object]]]:
    """The VM's exporter on the faulty exporter file, once the coordinator lists it."""
    config = _write_exporter(labhost, adapters, "exporter.yaml", with_faults=True)
    pid = exporter.start(labhost, config, coordinator, EXPORTER)
    wanted = {f"{EXPORTER}/{g}/console" for g in ("brd1", "brd2", "dup", "gone")}
    seen: dict[str, dict[str, object]] = {}

    def listed() -> bool:
        seen.update(_resources(_client(coordinator, "-vv", "resources", check=False)))
        return wanted <= set(seen)

    try:
        try:
            _wait_for("the VM exporter's resources at the coordinator", listed, 90)
        except BaseException:
            print(exporter.log(labhost))
            raise
        yield seen
    finally:
        exporter.stop(labhost, pid)


def test_exporter_in_the_lab_host_publishes_the_adapters(
        coordinator: int, exported: dict[str, dict[str, object]],
        ttys: dict[str, dict[str, str]]) -> None:
    available = set(_client(coordinator, "resources").split())
    print(_client(coordinator, "resources"))
    for group, serial in (("brd1", "HILBRD01"), ("brd2", "HILBRD02")):
        res = exported[f"{EXPORTER}/{group}/console"]
        assert res["avail"] is True and res["cls"] == "NetworkSerialPort", res
        assert f"{EXPORTER}/{group}/NetworkSerialPort" in available
        params = res["params"]
        assert isinstance(params, dict)
        assert params["extra"]["path"] == "/dev/" + _serial_ttys(ttys, serial)[0], res
    # labgrid binds the shared serial to one of the two, silently: hil lab check names both.
    dup = exported[f"{EXPORTER}/dup/console"]
    assert dup["avail"] is True and f"{EXPORTER}/dup/NetworkSerialPort" in available
    dup_params = dup["params"]
    assert isinstance(dup_params, dict)
    assert dup_params["extra"]["path"] in {"/dev/" + t for t in _serial_ttys(ttys, "HILDUP01")}
    # The missing adapter is published, but not available.
    assert exported[f"{EXPORTER}/gone/console"]["avail"] is False
    assert f"{EXPORTER}/gone/NetworkSerialPort" not in available


def test_a_client_on_this_host_reaches_a_board_through_the_lab_host(
        labhost: LabHostVM, coordinator: int, exported: dict[str, dict[str, object]],
        uarts: dict[int, Uart], adapters: list[Adapter], tmp_path: Path) -> None:
    """board UART -> FTDI adapter -> VM's ttyUSB -> ser2net (started by the exporter on
    acquire) -> QEMU forward -> labgrid's SerialDriver through a RemotePlace on this host."""
    from labgrid import Environment
    from labgrid.driver import SerialDriver

    place = f"labhost-brd1-{os.getpid()}"
    _client(coordinator, "-p", place, "create")
    _client(coordinator, "-p", place, "add-match", f"{EXPORTER}/brd1/*")
    _client(coordinator, "-p", place, "acquire")
    try:
        key = f"{EXPORTER}/brd1/console"
        port: list[int] = []

        def started() -> bool:
            params = _resources(_client(coordinator, "-v", "resources"))[key]["params"]
            assert isinstance(params, dict)
            if params.get("port"):
                port.append(int(params["port"]))
            return bool(port)

        _wait_for("ser2net in the VM", started)
        # The exporter publishes --hostname 127.0.0.1 and ser2net's port inside the VM: the
        # same port on this host's loopback is forwarded to it.
        labhost.forward(port[0], port[0])
        env_file = tmp_path / "env.yaml"
        env_file.write_text(yaml.safe_dump({
            "targets": {"main": {"resources": {"RemotePlace": {"name": place}},
                                 "drivers": {"SerialDriver": {}}}},
        }))
        os.environ["LG_COORDINATOR"] = f"127.0.0.1:{coordinator}"
        try:
            target = Environment(str(env_file)).get_target("main")
            assert target is not None
            serial = target.get_driver(SerialDriver)
            board = uarts[next(a.port for a in adapters if a.serial == "HILBRD01")]
            hello = f"hello-from-board-{time.monotonic_ns()}".encode()
            board.send(hello + b"\n")
            serial.expect(hello.decode(), timeout=30)
            reply = f"hello-from-client-{time.monotonic_ns()}".encode()
            serial.write(reply + b"\n")
            _wait_for("the client's bytes at the board", lambda: reply in board.poll())
            target.cleanup()
        finally:
            os.environ.pop("LG_COORDINATOR", None)
    finally:
        _client(coordinator, "-p", place, "release", check=False)
        _client(coordinator, "-p", place, "delete", check=False)


def test_the_lab_host_sees_its_tools_and_nothing_else_of_this_host(labhost: LabHostVM) -> None:
    """The VM's root is a tmpfs with this host's /usr, a view of /etc, the checkout and the
    venv: the exporter's Python and labgrid run, and this host's secrets are not there."""
    labhost.run(f"{sys.executable} -c 'import labgrid, pyudev'").check()
    labhost.run("grep -q '^root:' /etc/passwd").check()
    # This host's own secrets and homes, but the paths of what the VM runs (a pyenv Python
    # under /root, a checkout in a home).
    candidates = [Path(p) for p in ("/etc/gshadow", "/etc/ssh", "/home", "/srv",
                                    "/var/lib/dpkg", "/opt")]
    candidates += list(Path.home().iterdir())
    absent = [str(c) for c in candidates if c.exists()
              and not any(h.is_relative_to(c) for h in labhost.host_paths)]
    assert "/etc/ssh" in absent
    # Its /etc/shadow is its own: no account has a password there.
    assert labhost.run("grep -v '^[^:]*:\\*:' /etc/shadow; true").check().output.strip() == ""
    seen = labhost.run("for f in " + " ".join(shlex.quote(a) for a in absent)
                       + "; do test -e \"$f\" && echo \"$f\"; done; true").check().output
    assert seen.split() == [], f"visible in the lab-host VM: {seen}"
