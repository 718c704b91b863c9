"""The lab-host VM (hil/lab/labhost/): Debian's amd64 kernel with udev and QEMU's emulated FTDI
adapters, so that `hil lab check` and labgrid's exporter meet real udev devices.

Four adapters on known xHCI ports: HILBRD01 and HILBRD02, and two that share HILDUP01 (told apart
only by ID_PATH). The exporter file also names HILBRD03, which is not plugged in.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hil.lab.labhost.vm import Adapter, LabHostVM

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable  # the same path inside the VM (the host's root over 9p)
HIL = f"PYTHONPATH={REPO} {PYTHON} -m hil.cli"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> list[Adapter]:
    d = tmp_path_factory.mktemp("uarts")
    spec = [("HILBRD01", 1), ("HILBRD02", 2), ("HILDUP01", 3), ("HILDUP01", 4)]
    return [Adapter(s, port, f"file,path={d}/port{port}.out") for s, port in spec]


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
def ttys(labhost: LabHostVM) -> dict[str, dict[str, str]]:
    """Every /dev/ttyUSB* in the VM with its udev properties."""
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
        labhost: LabHostVM, adapters: list[Adapter], ttys: dict[str, dict[str, str]]) -> None:
    """Each /dev/ttyUSB* in the VM is one of QEMU's adapters: what the VM writes to it comes
    out of that adapter's chardev on this host, and out of no other."""
    by_path = {a.id_path: a for a in adapters}
    sent = {}
    for tty, props in ttys.items():
        adapter = by_path[props["ID_PATH"]]
        probe = f"hil-probe-{tty}-{adapter.serial}-{time.monotonic_ns()}"
        labhost.run(f"stty -F /dev/{tty} 115200 raw -echo && printf '%s\\n' {probe} > /dev/{tty}"
                    ).check()
        sent[adapter.port] = probe
    files = {a.port: Path(a.chardev.split("path=", 1)[1]) for a in adapters}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = {p: f.read_text(errors="replace") if f.exists() else "" for p, f in files.items()}
        if all(sent[p] in got[p] for p in sent):
            break
        time.sleep(0.5)
    for port, probe in sent.items():
        assert probe in got[port], (port, got)
        assert all(probe not in got[p] for p in got if p != port), got
