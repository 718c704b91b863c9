"""Checking labgrid exporter configurations against the places an environment file uses.

An exporter only says "no such resource" when a client first asks for it, on the lab; these
checks find a misspelt parameter, an unknown power backend or a place whose resources are in
no (or two) exporter groups at review time instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from typing import Any

import attr
import labgrid.resource  # noqa: F401  (registers the resource classes with the factory)
from labgrid.factory import target_factory
from labgrid.remote.config import ResourceConfig
from labgrid.resource.udev import USBResource

from hil.errors import ConfigError
from hil.preflight.udev_check import Resource

# What each `boot` option needs from the place, by labgrid resource class.
BOOT_NEEDS = {"usbsdmux": "USBSDMuxDevice", "uboot-tftp": "TFTPProvider"}
POWER = ("NetworkPowerPort", "PDUDaemonPort")


def load(path: Path) -> dict[str, Any]:
    """An exporter file as labgrid-exporter reads it: rendered by Jinja2, then YAML. The
    template gets an empty environment: a file must not need secrets to be checked."""
    # labgrid 26's ResourceConfig pprints the rendered and loaded file to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        config = ResourceConfig(str(path), {"env": {}, "isolated": False, "hostname": "check",
                                            "name": "check"})
    data: dict[str, Any] = config.data
    return data


def resources(group: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (class, parameters), as the exporter reads a group (`cls` or the name)."""
    out = {}
    for name, params in group.items():
        if name == "location" or params is None:
            continue
        params = dict(params)
        out[str(name)] = (str(params.pop("cls", name)), params)
    return out


def udev_resources(data: dict[str, Any]) -> list[Resource]:
    """The resources that labgrid finds by udev `match:` (its USBResource classes), in file
    order; ConfigError for a match that is not a mapping (labgrid would refuse it too)."""
    out = []
    for group, entries in data.items():
        for name, (cls, params) in resources(entries or {}).items():
            klass = target_factory.resources.get(cls)
            if klass is None or not issubclass(klass, USBResource):
                continue
            match = params.get("match", {})
            if not isinstance(match, dict):
                raise ConfigError(f"{group}/{name}: match must be a mapping, not {match!r}")
            out.append(Resource(str(group), name, cls, {str(k): v for k, v in match.items()}))
    return out


def resource_problems(exporter: str, data: Any) -> list[str]:
    """Parameters that labgrid would reject when it builds each resource."""
    if not isinstance(data, dict):
        return [f"{exporter}: must be a mapping of groups to resources"]
    out = []
    for group, entries in data.items():
        for name, (cls, params) in resources(entries or {}).items():
            where = f"{exporter}: {group}/{name}"
            klass = target_factory.resources.get(cls)
            if klass is None:
                out.append(f"{where}: labgrid has no resource class {cls}")
                continue
            fields = {f.name: f for f in attr.fields(klass) if f.init and f.name not in
                      ("target", "name")}
            out += [f"{where}: {cls} takes no parameter {p!r}" for p in params if p not in fields]
            out += [f"{where}: {cls} needs {f}" for f, a in fields.items()
                    if a.default is attr.NOTHING and f not in params]
            if cls == "NetworkPowerPort" and not _power_backend(str(params.get("model"))):
                out.append(f"{where}: no labgrid power backend {params.get('model')!r} "
                           "(labgrid/driver/power/)")
    return out


def _power_backend(model: str) -> bool:
    return model.isidentifier() and importlib.util.find_spec(
        f"labgrid.driver.power.{model}") is not None


def place_problems(env: dict[str, Any], exporters: dict[str, Any]) -> list[str]:
    """Every RemotePlace of the environment must have its resources in exactly one exporter
    group of its name, with a power port, what its `boot` needs and the console resources
    its options name."""
    out = []
    for target, spec in (env.get("targets") or {}).items():
        place = ((spec or {}).get("resources") or {}).get("RemotePlace", {}).get("name")
        if place is None:
            continue
        groups = [(exp, data[place]) for exp, data in exporters.items() if place in data]
        if len(groups) != 1:
            found = ", ".join(exp for exp, _ in groups) or "none"
            out.append(f"place {place} (target {target}): needs one exporter group of that "
                       f"name, found {found}")
            continue
        exporter, group = groups[0]
        have = resources(group)
        classes = {cls for cls, _ in have.values()}
        options = spec.get("options") or {}
        if not classes & set(POWER):
            out.append(f"{exporter}: {place} has no power port ({' or '.join(POWER)})")
        need = BOOT_NEEDS.get(str(options.get("boot")))
        if need is None:
            out.append(f"place {place}: boot must be one of {', '.join(BOOT_NEEDS)}")
        elif need not in classes:
            out.append(f"{exporter}: {place} boots by {options['boot']} but has no {need}")
        for console in ("board_console", "guest_console"):
            name = (options.get(console) or {}).get("resource")
            if name not in have:
                out.append(f"{exporter}: {place} has no resource {name!r} "
                           f"(options.{console}.resource)")
    return out
