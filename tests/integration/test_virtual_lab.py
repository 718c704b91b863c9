"""The virtual lab as a lab: `hil lab up` starts a coordinator, an exporter and two virtual
boards; the board cases run on both places at once through the coordinator, with power from
the lab's switch, consoles from ser2net and images from its TFTP server; the switch's password
appears in no output; `hil lab down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.lab import sshd, virtual_lab
from hil.lab.virtual_lab import LabState

from .conftest import REPO, run_pytest

LAB_ENV = REPO / "places" / "virtual-lab.yaml"
# Planted as the switch's password: it must show up nowhere but in its own file.
SECRET = "planted-" + secrets.token_hex(8)


def client(state: LabState, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([virtual_lab.labgrid_tool("labgrid-client"), "-x", state.coordinator,
                           *args], capture_output=True, text=True, timeout=60)


def processes_naming(*needles: str) -> list[int]:
    """Every process whose command line names one of `needles`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if any(n.encode() in cmdline for n in needles):
                pids.append(int(proc.name))
    return pids


def lab_processes(directory: Path) -> list[int]:
    """The lab's processes: each names the lab's directory (QEMU its cables)."""
    return processes_naming(str(directory))


@pytest.fixture(scope="module")
def lab(built_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("vlab")
    creds = base / "power-credentials"
    creds.write_text(f"hil:{SECRET}\n")
    creds.chmod(0o600)
    directory = base / "lab"
    t0 = time.monotonic()
    state = virtual_lab.up(directory, 2, credentials=str(creds))
    up_s = time.monotonic() - t0
    yield state, directory, creds, up_s
    virtual_lab.down(directory)


def test_hil_lab_up_makes_two_places_with_the_lab_resources(lab: Any, record_property) -> None:
    state, _, _, up_s = lab
    record_property("lab_up_to_ready_s", round(up_s, 2))
    assert state.places == ["virtual-0", "virtual-1"]
    for place in state.places:
        shown = client(state, "-p", place, "show")
        assert shown.returncode == 0, shown.stderr
        assert "board=virtual, gic=v2, kvm=yes" in shown.stdout
        for resource in ("board-console", "guest-console", "power", "tftp"):
            assert f"hil-lab/{place}/" in shown.stdout and f"/{resource}" in shown.stdout


def test_both_places_boot_their_boards_at_once_through_the_coordinator(
        lab: Any, tmp_path: Path, record_property) -> None:
    state, directory, creds, _ = lab
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    both_up = threading.Event()

    def run(place: str) -> None:
        env = {"LG_COORDINATOR": state.coordinator, "LG_PLACE": place,
               "HIL_POWER_CREDENTIALS": str(creds)}
        acquired = client(state, "-p", place, "acquire")
        assert acquired.returncode == 0, acquired.stderr
        try:
            runs[place] = run_pytest(LAB_ENV, tmp_path / place, "testcases/test_board.py",
                                     "--lg-log", str(tmp_path / place / "lg-log"),
                                     extra_env=env)
        finally:
            client(state, "-p", place, "release")

    threads = [threading.Thread(target=run, args=(p,)) for p in state.places]
    for t in threads:
        t.start()
    # Both boards' QEMUs (each names its own cables) must run at the same moment.
    while any(t.is_alive() for t in threads):
        qemus = {p for p in state.places for pid in lab_processes(directory)
                 if f"{p}-console.sock".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()}
        if qemus == set(state.places):
            both_up.set()
        time.sleep(0.5)
    for place in state.places:
        r = runs[place]
        assert r.returncode == 0, f"{place}:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
        assert "3 passed" in r.stdout
        timings = json.loads((tmp_path / place / "session.json").read_text())["timings"]
        record_property(f"{place}_power_on_to_board_s", round(timings["power_on_to_board_s"], 1))
    assert both_up.is_set(), "the two boards never ran at the same time"

    # The switch's password reached the driver (the boards were powered) and nothing else.
    outputs = [r.stdout + r.stderr for r in runs.values()]
    outputs += [client(state, "-p", p, "show").stdout for p in state.places]
    for root in [tmp_path, directory]:
        for f in root.rglob("*"):
            if f.is_file() and not f.is_socket() and f != creds:
                outputs.append(f.read_bytes().decode(errors="replace"))
    leaks = [o[max(0, o.find(SECRET) - 200):o.find(SECRET) + 50] for o in outputs if SECRET in o]
    assert not leaks, leaks


def test_an_unknown_place_is_named_before_anything_is_powered(lab: Any, tmp_path: Path) -> None:
    state, directory, creds, _ = lab
    r = run_pytest(LAB_ENV, tmp_path / "r", "testcases/test_board.py",
                   extra_env={"LG_COORDINATOR": state.coordinator, "LG_PLACE": "no-such-board",
                              "HIL_POWER_CREDENTIALS": str(creds)})
    assert r.returncode == 4, r.stdout[-3000:]
    assert "no-such-board" in r.stdout + r.stderr
    assert not any(b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in lab_processes(directory))


def test_hil_lab_down_leaves_nothing_behind(lab: Any) -> None:
    state, directory, _, _ = lab
    ports = [int(state.coordinator.rsplit(":", 1)[1]), int(state.switch.rsplit(":", 1)[1])]
    assert lab_processes(directory)
    # ser2net names only the cable's tty: ask for those by name.
    ttys = [f"{res['port']},"
            for group in yaml.safe_load((directory / "exporter.yaml").read_text()).values()
            for res in group.values() if isinstance(res, dict) and res.get("cls") == "RawSerialPort"]
    assert len(ttys) == 4
    r = subprocess.run([sys.executable, "-m", "hil.cli", "lab", "down", "--dir", str(directory)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert lab_processes(directory) == []
    assert processes_naming(*ttys) == []
    assert not directory.exists()
    assert not sshd.dropin_path(directory.name).exists()
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    # Port 69 is free again for the next lab or U-Boot board.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((state.address, 69))
