"""`hil lab check`: the exporter file, this host's udev database (through pyudev) and dumps."""

import json
from pathlib import Path

import pytest

from hil.cli import main
from hil.preflight import exporters, udev_host
from hil.preflight.udev_check import Device, Resource, Status, check, to_data
from tests.unit.test_udev_check import ftdi

REPO = Path(__file__).resolve().parents[2]
RACK1 = REPO / "places" / "exporters" / "hil-rack1.yaml"
NOTHING = {"g": {"console": {"cls": "USBSerialPort",
                             "match": {"ID_SERIAL_SHORT": "no-such-adapter-serial"}}}}


def _mux(port: str) -> Device:
    hub_port = Device(f"1-{port}", {"SUBSYSTEM": "usb", "ID_PATH": f"pci-0000:00:14.0-usb-0:{port}"})
    return Device(f"1-{port}.1", {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device",
                                  "ID_VENDOR_ID": "0424", "ID_MODEL_ID": "4041"}, parents=(hub_port,))


def _rack1() -> list[Device]:
    """hil-rack1 as its file says it is cabled."""
    zcu = [ftdi(f"ttyUSB{3 + i}", "0123ZCU102A", "3", iface=f"0{i}", model="6011") for i in range(4)]
    return [ftdi("ttyUSB0", "FT4RPI40", "1.1"), ftdi("ttyUSB1", "FT4JUNO0", "1.2"),
            ftdi("ttyUSB2", "FT4LS1A0", "1.3"), ftdi("ttyUSB7", "FT4LS1A1", "1.4"), *zcu,
            _mux("2.1"), _mux("2.2")]


def _dump(path: Path, devices: list[Device]) -> Path:
    udev_host.write_dump(path, devices)
    return path


def _exporter(tmp_path: Path, groups: dict) -> Path:
    path = tmp_path / "e.yaml"
    path.write_text(json.dumps(groups))  # JSON is YAML, and has no '#' for Jinja2
    return path


def test_the_rack1_file_resolves_on_its_recorded_rack(tmp_path, capsys):
    assert main(["lab", "check", str(RACK1), "--udev-dump", str(_dump(tmp_path / "d.json", _rack1()))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:-1]] == ["OK"] * 8
    assert out[-1] == "lab check: 8 udev-matched resources in hil-rack1.yaml, all resolve"


def test_a_swapped_adapter_on_rack1(tmp_path, capsys):
    # The Juno's cable replaced by one with another serial number, on the same hub port.
    devices = [d for d in _rack1() if d.sys_name != "ttyUSB1"] + [ftdi("ttyUSB1", "FT4JUNO9", "1.2")]
    assert main(["lab", "check", str(RACK1), "--udev-dump", str(_dump(tmp_path / "d.json", devices))]) == 2
    out = capsys.readouterr().out
    assert "MISSING   juno-r2/board-console" in out
    assert "    nearest: ttyUSB1: ID_SERIAL_SHORT=FT4JUNO9" in out


def test_udev_resources_of_the_rack1_file():
    found = exporters.udev_resources(exporters.load(RACK1))
    assert [(r.label, r.cls) for r in found][:2] == [
        ("rpi4/board-console", "USBSerialPort"), ("rpi4/sdmux", "USBSDMuxDevice")]
    assert len(found) == 8  # no NetworkSerialPort, power port or TFTPProvider


def test_a_malformed_file_is_a_usage_error(tmp_path, capsys):
    bad = _exporter(tmp_path, {"g": {"c": {"cls": "USBSerialPort", "match": "ID_PATH=x"}}})
    assert main(["lab", "check", str(bad), "--udev-dump", "/nonexistent"]) == 4
    assert "match must be a mapping" in capsys.readouterr().err
    typo = _exporter(tmp_path, {"g": {"c": {"cls": "USBSerialPort", "mach": {"ID_PATH": "x"}}}})
    assert main(["lab", "check", str(typo)]) == 4
    assert "takes no parameter 'mach'" in capsys.readouterr().err
    assert main(["lab", "check", str(tmp_path / "absent.yaml")]) == 4


def test_a_dump_that_is_not_one_is_a_usage_error(tmp_path, capsys):
    dump = tmp_path / "d.json"
    dump.write_text('{"devices": []}')
    assert main(["lab", "check", str(_exporter(tmp_path, NOTHING)), "--udev-dump", str(dump)]) == 4
    assert "not a hil-udev-dump/1 file" in capsys.readouterr().err


# This machine's own udev database, through pyudev: there are tty devices (ttyS*, tty*) on
# any Linux host, and none of them is a USB serial port with that serial number.
needs_sysfs = pytest.mark.skipif(not Path("/sys/class/tty").is_dir(), reason="no sysfs")


@needs_sysfs
def test_this_hosts_tty_devices_through_pyudev():
    devices = udev_host.list_devices({"tty"})
    assert devices and all(d.properties["SUBSYSTEM"] == "tty" for d in devices)
    assert any(d.sys_name.startswith("tty") and d.fields.get("device_node") for d in devices)
    f = check(Resource("g", "console", "USBSerialPort", {"ID_SERIAL_SHORT": "no-such"}), devices)
    assert f.status is Status.MISSING and f.present == len(devices)


@needs_sysfs
def test_check_on_this_host_reports_missing_and_its_export_reads_back(tmp_path, capsys):
    exporter = _exporter(tmp_path, NOTHING)
    dump = tmp_path / "host.json"
    assert main(["lab", "check", str(exporter), "--export-udev", str(dump)]) == 2
    live = capsys.readouterr().out
    assert "MISSING   g/console" in live
    replayed = udev_host.read_dump(dump)
    live_names = {d.sys_name for d in udev_host.list_devices({"tty", "usb"})}
    assert replayed and {d.sys_name for d in replayed} == live_names
    assert main(["lab", "check", str(exporter), "--udev-dump", str(dump)]) == 2
    assert capsys.readouterr().out == live.split("\n", 1)[1]  # the same, less the export line


def test_a_dump_round_trips(tmp_path):
    devices = _rack1()
    assert udev_host.read_dump(_dump(tmp_path / "d.json", devices)) == devices
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["devices"][0] == to_data(devices[0])
