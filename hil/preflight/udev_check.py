"""Does each udev `match:` of an exporter configuration name exactly one device on a lab host?

labgrid's exporter takes the first device a match fits and ignores the others without a word
(USBResource.try_match goes to its update branch once `device` is set), and says nothing about
a match that fits none until a client asks for the resource. This module finds both from a
list of devices, and says which udev keys would tell the candidates apart or which present
devices come nearest to a missing one.

Devices are plain data (see hil/preflight/udev_host.py for reading them from pyudev). Whether
a resource binds to a device is labgrid's own answer: the resource class the file names is
built, kept off udev, and its try_match is asked for each device (the keys the class adds to
its `match:`, its filter_match's vendor and model tables and all). What the finding suggests
(the keys that would tell devices apart) is hil's.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import attr
from labgrid.factory import target_factory
from labgrid.resource.common import ResourceManager
from labgrid.resource.udev import USBResource

from hil.verdict import ExitCode

# The keys that may tell adapters apart, in the order a suggestion prefers them; a tuple is
# one key made of several properties.
PREFERRED: tuple[tuple[str, ...], ...] = (
    ("ID_SERIAL_SHORT",), ("ID_PATH",), ("ID_USB_INTERFACE_NUM",), ("ID_VENDOR_ID", "ID_MODEL_ID"),
    ("ID_SERIAL",),
)
NEAREST = 3  # devices named for a missing match


@dataclass(frozen=True)
class Device:
    """One udev device as plain data.

    `fields` holds the pyudev Device attributes that labgrid's getattr(dev, key) reaches
    besides sys_name (sys_path, subsystem, driver, device_type, device_node, ...); `parents`
    runs from the nearest up, as pyudev's Device.ancestors.
    """

    sys_name: str
    properties: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    parents: tuple[Device, ...] = ()


@dataclass(frozen=True)
class Resource:
    """A udev-matched resource of an exporter file, as written there."""

    group: str
    name: str
    cls: str
    match: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.group}/{self.name}"


class Status(StrEnum):
    OK = "OK"
    AMBIGUOUS = "AMBIGUOUS"
    MISSING = "MISSING"
    SKIPPED = "SKIPPED"  # not a udev resource labgrid knows, or one it cannot build


@dataclass(frozen=True)
class Candidate:
    """A device named in a finding: its telling keys and, for an ambiguous match, the
    `match:` that picks it alone (None if no preferred key does)."""

    device: Device
    keys: Mapping[str, str]
    suggestion: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Finding:
    resource: Resource
    status: Status
    matched: tuple[Candidate, ...] = ()  # OK: the device; AMBIGUOUS: every one
    nearest: tuple[Candidate, ...] = ()  # MISSING: the closest devices present
    present: int = 0  # MISSING: devices of its subsystem, of any class
    notes: tuple[str, ...] = ()


@attr.s(eq=False)
class _Offline(ResourceManager):  # type: ignore[misc]
    """Keeps the resources it is given and watches no udev: a check runs on any host."""


_CLASSES: dict[str, type] = {}


def _offline_class(cls: str) -> type | None:
    """labgrid's resource class `cls` as a check builds it: managed by _Offline, and with an
    update() that does nothing (labgrid's reads the bound device's files: here there are
    none). Its matching, try_match and filter_match, is labgrid's own."""
    base = target_factory.resources.get(cls)
    if base is None or not issubclass(base, USBResource):
        return None
    if cls not in _CLASSES:
        _CLASSES[cls] = attr.s(eq=False)(type(cls, (base,), {
            "manager_cls": _Offline, "update": lambda self: None}))
    return _CLASSES[cls]


def _resource(cls: str, match: Mapping[str, Any]) -> Any:
    klass = _offline_class(cls)
    if klass is None:
        return None
    try:
        return klass(None, "hil-lab-check", match=dict(match))
    except (TypeError, ValueError):
        return None  # a class that needs more than a match (its other parameters)


class _UdevView:
    """A Device as labgrid's try_match reads a pyudev Device: properties, attributes by name,
    Device attributes such as sys_name, its ancestors, and no action (a device present)."""

    action = None

    def __init__(self, device: Device):
        self._device = device
        self.properties = device.properties
        self.attributes = _Attributes(device.attributes)
        self.ancestors = [_UdevView(p) for p in device.parents]
        self.sys_name = device.sys_name

    def __getattr__(self, key: str) -> Any:
        fields = self.__dict__["_device"].fields
        if key in fields:
            return fields[key]
        raise AttributeError(key)


class _Attributes:
    def __init__(self, values: Mapping[str, str]):
        self._values = values

    def get(self, key: str) -> bytes | None:
        value = self._values.get(key)
        return value.encode() if value is not None else None

    def asstring(self, key: str) -> str:
        return self._values[key]


def effective_match(cls: str, match: Mapping[str, Any]) -> dict[str, Any] | None:
    """The match labgrid uses for `cls`: the file's, with what the class adds (None: not a
    udev resource labgrid can build from a match alone)."""
    resource = _resource(cls, match)
    return None if resource is None else dict(resource.match)


def binds(cls: str, match: Mapping[str, Any], device: Device) -> bool:
    """Would labgrid's `cls` with this `match:` take `device` (as a new device)?"""
    resource = _resource(cls, match)
    return resource is not None and bool(resource.try_match(_UdevView(device)))


def _single(dev: Device, key: str, value: Any) -> bool:
    # USBResource.try_match's match_single: a property, a non-empty sysfs attribute by its bare
    # name, or a pyudev Device attribute such as sys_name.
    if dev.properties.get(key) == value:
        return True
    if dev.attributes.get(key) and dev.attributes[key] == value:
        return True
    have = dev.sys_name if key == "sys_name" else dev.fields.get(key)
    return have is not None and have == value


def matches(dev: Device, match: Mapping[str, Any]) -> bool:
    """A plain match against a device, as labgrid's try_match reads keys (every key on the
    device, `@key` on any ancestor, each maybe a different one), without a class's filter:
    for the suggestions, which try many matches."""
    for k, v in match.items():
        if k.startswith("@"):
            if not any(_single(a, k[1:], v) for a in dev.parents):
                return False
        elif not _single(dev, k, v):
            return False
    return True


def _value(dev: Device, key: str) -> str | None:
    """What a device offers for a match key (for `@key`, the nearest ancestor's)."""
    if key.startswith("@"):
        return next((v for a in dev.parents if (v := _value(a, key[1:])) is not None), None)
    if key in dev.properties:
        return dev.properties[key]
    if dev.attributes.get(key):
        return dev.attributes[key]
    return dev.sys_name if key == "sys_name" else dev.fields.get(key)


def _keys(dev: Device, also: Sequence[str] = ()) -> dict[str, str]:
    out = {k: dev.properties[k] for group in PREFERRED for k in group if k in dev.properties}
    for k in also:
        if k not in out and (v := _value(dev, k)) is not None:
            out[k] = v
    return out


def _notes(match: Mapping[str, Any]) -> list[str]:
    out = []
    for k, v in match.items():
        if not isinstance(v, str):
            out.append(f"{k}: {v!r} is a {type(v).__name__}; labgrid compares strings, "
                       "so it matches nothing: quote it")
        bare = k.lstrip("@")
        if bare.startswith("ATTR{") and bare.endswith("}"):
            out.append(f"{k}: labgrid matches a sysfs attribute by its bare name: "
                       f"{k[: len(k) - len(bare)]}{bare[5:-1]}")
    return out


def _suggest(dev: Device, others: Sequence[Device], match: Mapping[str, Any], base: Mapping[str, Any],
             devices: Sequence[Device]) -> dict[str, str] | None:
    """The fewest preferred keys (in preference order) that pick `dev` alone from the devices
    that `match` fits; without the file's own keys if those add nothing."""
    usable = [{k: dev.properties[k] for k in g} for g in PREFERRED
              if all(k in dev.properties for k in g)]
    # Then the parents': an SD mux's ID_PATH is on its hub port, not on itself.
    for g in PREFERRED:
        parents = {f"@{k}": v for k in g if k not in dev.properties
                   and (v := _value(dev, f"@{k}")) is not None}
        if len(parents) == len(g):
            usable.append(parents)
    for n in (1, 2):
        for combo in itertools.combinations(usable, n):
            keys = {k: v for group in combo for k, v in group.items()}
            if any(matches(o, keys) for o in others):
                continue
            lean = {**base, **keys}
            if [d for d in devices if matches(d, lean)] == [dev]:
                return keys
            return {**{k: str(v) for k, v in match.items() if k not in base}, **keys}
    return None


def check(resource: Resource, devices: Sequence[Device]) -> Finding:
    """One resource's finding against the devices of a host."""
    effective = effective_match(resource.cls, resource.match)
    implied = effective_match(resource.cls, {})
    if effective is None or implied is None:
        return Finding(resource, Status.SKIPPED,
                       notes=(f"labgrid cannot build a {resource.cls} from a match alone; "
                              "not checked",))
    # The class's own keys: every candidate a labgrid resource of this class could bind to.
    base = {k: effective[k] for k in implied}
    own = [k for k in effective if k not in base]
    notes = tuple(_notes(resource.match))
    found = [d for d in devices if binds(resource.cls, resource.match, d)]
    if len(found) == 1:
        return Finding(resource, Status.OK, matched=(Candidate(found[0], _keys(found[0], own)),),
                       notes=notes)
    if found:
        keys = [_keys(d, own) for d in found]
        differ = {k for k in set().union(*keys) if len({ks.get(k) for ks in keys}) > 1}
        return Finding(resource, Status.AMBIGUOUS, notes=notes, matched=tuple(
            Candidate(d, {k: v for k, v in ks.items() if k in differ},
                      _suggest(d, [o for o in found if o is not d], resource.match, base, devices))
            for d, ks in zip(found, keys, strict=True)))
    pool = [d for d in devices if binds(resource.cls, {}, d)]
    ranked = sorted(pool, key=lambda d: (-_closeness(d, {k: effective[k] for k in own}), d.sys_name))
    present = sum(matches(d, {"SUBSYSTEM": effective["SUBSYSTEM"]}) for d in devices)
    return Finding(resource, Status.MISSING, notes=notes, present=present,
                   nearest=tuple(Candidate(d, _keys(d, own)) for d in ranked[:NEAREST]))


def _closeness(dev: Device, match: Mapping[str, Any]) -> float:
    """How near a device comes to a match: per key 1 if it fits, else the similarity of the
    value it has; the mean."""
    if not match:
        return 0.0
    score = 0.0
    for k, v in match.items():
        if matches(dev, {k: v}):
            score += 1.0
        elif (have := _value(dev, k)) is not None:
            score += difflib.SequenceMatcher(None, str(v), have).ratio()
    return score / len(match)


def check_all(resources: Sequence[Resource], devices: Sequence[Device]) -> list[Finding]:
    return [check(r, devices) for r in resources]


def exit_code(findings: Sequence[Finding]) -> ExitCode:
    """0 only if every modelled match names one device. An unresolved match is INCONCLUSIVE,
    not USAGE_ERROR: the file is well-formed and the host's cabling (an unplugged or swapped
    adapter) is what to fix, the lab's side like any infrastructure failure; USAGE_ERROR stays
    for a file that cannot be read, so the two are told apart by the exit code alone."""
    bad = any(f.status in (Status.AMBIGUOUS, Status.MISSING) for f in findings)
    return ExitCode.INCONCLUSIVE if bad else ExitCode.PASSED


def snippet(match: Mapping[str, Any]) -> str:
    """A `match:` in the exporter files' style (values quoted: '00' must stay a string)."""
    def key(k: str) -> str:
        return f"'{k}'" if k.startswith("@") else k

    def val(v: Any) -> str:
        return "'" + str(v).replace("'", "''") + "'"
    return "match: {" + ", ".join(f"{key(k)}: {val(v)}" for k, v in match.items()) + "}"


def _show(keys: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in keys.items()) or "(no identifying keys)"


def render(finding: Finding) -> list[str]:
    """A headline per resource, then what to change, indented."""
    r = finding.resource
    head = f"{finding.status.value:<9} {r.label} ({r.cls}, {snippet(r.match)})"
    lines: list[str]
    if finding.status is Status.OK:
        lines = [f"{head}: {finding.matched[0].device.sys_name}"]
    elif finding.status is Status.AMBIGUOUS:
        names = ", ".join(c.device.sys_name for c in finding.matched)
        lines = [f"{head}: {len(finding.matched)} devices fit ({names}); labgrid takes the first"]
        for c in finding.matched:
            fix = (snippet(c.suggestion) if c.suggestion is not None
                   else "no preferred key tells it apart (labgrid-suggest shows more)")
            lines.append(f"    {c.device.sys_name}: {_show(c.keys)} -> {fix}")
    elif finding.status is Status.MISSING:
        lines = [f"{head}: no device fits (unplugged, or renumbered?)"]
        if finding.nearest:
            lines += [f"    nearest: {c.device.sys_name}: {_show(c.keys)}" for c in finding.nearest]
        else:
            subsystem = effective_match(r.cls, r.match) or {}
            lines.append(f"    no {r.cls} candidate at all ({finding.present} devices in "
                         f"subsystem {subsystem.get('SUBSYSTEM')}, none of its class)")
    else:
        lines = [head]
    return lines + [f"    note: {n}" for n in finding.notes]


def to_data(dev: Device) -> dict[str, Any]:
    """A device as JSON-able plain data (the --udev-dump format)."""
    return {"sys_name": dev.sys_name, "properties": dict(dev.properties),
            "attributes": dict(dev.attributes), "fields": dict(dev.fields),
            "parents": [to_data(p) for p in dev.parents]}


def from_data(data: Mapping[str, Any]) -> Device:
    """The inverse of to_data; ValueError on anything else."""
    if not isinstance(data, Mapping) or not isinstance(data.get("sys_name"), str):
        raise ValueError(f"not a device: {str(data)[:80]}")

    def strings(name: str) -> dict[str, str]:
        value = data.get(name) or {}
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError(f"{data['sys_name']}: {name} must map strings to strings")
        return dict(value)

    parents = data.get("parents") or []
    if not isinstance(parents, list):
        raise ValueError(f"{data['sys_name']}: parents must be a list")
    return Device(data["sys_name"], strings("properties"), strings("attributes"),
                  strings("fields"), tuple(from_data(p) for p in parents))


def subsystems(resources: Sequence[Resource]) -> set[str]:
    """The udev subsystems the modelled resources are found in (labgrid lists only those)."""
    out = set()
    for r in resources:
        effective = effective_match(r.cls, r.match)
        if effective is not None:
            out.add(str(effective["SUBSYSTEM"]))
    return out
