"""A host's udev devices as hil/preflight/udev_check.py's plain data: read with pyudev, or from and
to a JSON dump (so a lab engineer can send a host's devices and the check runs elsewhere)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hil.errors import ConfigError
from hil.preflight.udev_check import Device, from_data, to_data

FORMAT = "hil-udev-dump/1"
# pyudev Device attributes that labgrid's getattr(dev, key) can compare with a match value.
FIELDS = ("sys_path", "device_path", "subsystem", "driver", "device_type", "device_node",
          "sys_number")


def _device(dev: Any, with_parents: bool = True) -> Device:
    attributes = {}
    for name in dev.attributes.available_attributes:
        try:
            value = dev.attributes.get(name)
            text = value.decode() if value is not None else None
        except (OSError, UnicodeDecodeError):
            continue  # unreadable or binary (a PCI config space): no match value can equal it
        if text is not None and "\0" not in text:
            attributes[name] = text
    fields = {f: str(v) for f in FIELDS if (v := getattr(dev, f, None)) is not None}
    # An ancestor's own keys are all a match reads from it; its ancestors come with the device.
    parents = tuple(_device(a, False) for a in dev.ancestors) if with_parents else ()
    return Device(str(dev.sys_name), {str(k): str(v) for k, v in dev.properties.items()},
                  attributes, fields, parents)


def list_devices(subsystems: Iterable[str], context: Any = None) -> list[Device]:
    """Every device of these subsystems on this host, as udev has them now."""
    import pyudev

    context = context or pyudev.Context()
    return [_device(d) for s in sorted(set(subsystems)) for d in context.list_devices(subsystem=s)]


def write_dump(path: Path, devices: Iterable[Device]) -> None:
    data = {"format": FORMAT, "host": socket.gethostname(),
            "devices": [to_data(d) for d in devices]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def read_dump(path: Path) -> list[Device]:
    """The devices of a dump written by write_dump; ConfigError if it is not one."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        return [from_data(d) for d in data["devices"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from e
