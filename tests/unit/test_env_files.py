"""Every target of every environment file under places/ builds into a labgrid Target: each
driver and strategy it names is registered and binds, with fake resources standing in for the
devices. A remote place gets the resources its exporter publishes for it (the exporter files
under places/exporters/, or the virtual lab's own exporter configuration), in the form a client
receives them from the coordinator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from labgrid import Environment
from labgrid.util import yaml

from hil.preflight import exporters
from hil.virtual_lab import supervisor as virtual_lab

REPO = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((REPO / "places").glob("*.yaml"))


def _published(cls: str, params: dict[str, Any], host: str) -> tuple[str, dict[str, Any]]:
    """An exported resource as a client's RemotePlace gets it (labgrid/remote/exporter.py:
    local devices become their Network*/Remote* classes on the exporter's host)."""
    usb = {"host": host, "busnum": 1, "devnum": 2, "path": "1-2", "vendor_id": 0x0424,
           "model_id": 0x4041}
    if cls in ("USBSerialPort", "RawSerialPort"):
        return "NetworkSerialPort", {"host": host, "port": 40000, "speed": params.get("speed",
                                                                                      115200)}
    if cls == "USBSDMuxDevice":
        return "NetworkUSBSDMuxDevice", {**usb, "control_path": "/dev/sg1"}
    if cls == "USBMassStorage":
        return "NetworkUSBMassStorage", usb
    if cls == "TFTPProvider":
        return "RemoteTFTPProvider", {"host": host, "internal": params["internal"],
                                      "external": params["external"]}
    # Network resources (power ports, PDUDaemon, NetworkSerialPort) are published as they are.
    return cls, {k: v for k, v in params.items() if k != "match"}


def _exporter_groups(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Place name -> the resources its exporter publishes."""
    groups: dict[str, dict[str, Any]] = {}
    for path in sorted((REPO / "places" / "exporters").glob("*.yaml")):
        groups.update(exporters.load(path))
    plan = virtual_lab.LabPlan(tmp_path, 2, "127.0.0.1", 20408, 2222)
    devices = {name: f"/dev/pts/{i}" for i, name in enumerate(virtual_lab.cable_names(plan))}
    groups.update(plan.exporter_config(devices, 8080))
    return groups


def _targets() -> list[tuple[Path, str]]:
    return [(path, name) for path in ENV_FILES
            for name in yaml.load(path.read_text())["targets"]]


@pytest.mark.parametrize(("path", "name"), _targets(),
                         ids=[f"{p.name}:{n}" for p, n in _targets()])
def test_every_target_of_every_environment_file_builds(path, name, tmp_path, monkeypatch):
    monkeypatch.setenv("HIL_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("LG_PLACE", "virtual-0")
    monkeypatch.setenv("HIL_POWER_CREDENTIALS", str(tmp_path / "credentials"))
    config = yaml.load(path.read_text())
    yaml.resolve_templates(config, {**os.environ})
    target = config["targets"][name]
    place = (target.get("resources") or {}).get("RemotePlace")
    if place is not None:
        group = _exporter_groups(tmp_path).get(place["name"])
        assert group is not None, f"no exporter publishes place {place['name']}"
        resources = []
        for rname, res in group.items():
            if not isinstance(res, dict):
                continue  # location
            cls, params = _published(res["cls"], {k: v for k, v in res.items() if k != "cls"},
                                     "lab-host.example")
            resources.append({cls: {"name": rname, **params}})
        target["resources"] = resources
    config["targets"] = {name: target}
    built = tmp_path / path.name
    built.write_text(yaml.dump(config))
    env = Environment(str(built))
    t = env.get_target(name)
    assert t is not None
    strategies = [d for d in t.drivers if type(d).__name__.endswith("Strategy")]
    assert len(strategies) == 1, f"{path.name}:{name}: {strategies}"
    env.cleanup()


def _registered_after(module: str) -> set[str]:
    """The driver classes labgrid's factory knows after a fresh interpreter imports `module`."""
    import subprocess
    import sys
    code = ("import importlib, sys; from labgrid.factory import target_factory as f; "
            "before = set(f.drivers); importlib.import_module(sys.argv[1]); "
            "print(' '.join(sorted(set(f.drivers) - before)))")
    r = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True,
                       check=True)
    return set(r.stdout.split())


def test_environment_files_that_import_hil_lab_get_every_class_hil_labgrid_registers():
    registered = _registered_after("hil.labgrid")
    assert {"BoardGuestStrategy", "UBootBoardGuestStrategy", "SDMuxBoardGuestStrategy",
            "VirtualBoardDriver", "GuestVMMDriver", "PowerSwitchDriver",
            "TFTPServerDriver"} <= registered
    assert _registered_after("hil.lab") == registered
