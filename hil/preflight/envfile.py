"""Checking a labgrid environment file before labgrid loads it, for one clear message."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from labgrid.util.yaml import load
from yaml import YAMLError

from hil.errors import ConfigError
from hil.labgrid import vmm
from hil.measure import costmodel, throughput

# The options the testcases read, and the names in them they use.
VMMS = ("stock", "patched")
GUEST_KERNELS = ("patched", "debug", "stock")
COUNTS = ("throughput_iterations", "throughput_seconds", "bench_iterations", "bench_seconds")


def option_problems(options: dict[str, Any]) -> list[str]:
    """The board options the testcases read, checked before power-on (a bad one would fail
    the cases as infrastructure after it). One left out is checked against the selected
    cases' `needs_options` markers once they are collected (missing_options)."""
    out = []
    for key, names in (("vmms", VMMS), ("guest_kernels", GUEST_KERNELS)):
        value = options.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            out.append(f"{key} must map {', '.join(names)} to absolute paths on the board")
            continue
        missing = [n for n in names if n not in value]
        if missing:
            out.append(f"{key} lacks {', '.join(missing)} (the cases use {', '.join(names)})")
        out += [f"{key}.{k}: {v!r} is not an absolute path on the board"
                for k, v in value.items() if not (isinstance(v, str) and v.startswith("/"))]
    for key in COUNTS:
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            out.append(f"{key}: {value!r} is not a whole number of at least 1")
    wirings = options.get("bench_wirings")
    if wirings is not None and (not isinstance(wirings, list) or not wirings
                                or not all(w in throughput.WIRINGS for w in wirings)):
        out.append(f"bench_wirings: {wirings!r}: write a list of wirings to measure, from "
                   f"{', '.join(throughput.WIRINGS)}")
    elif wirings is not None and isinstance(options.get("thresholds"), dict):
        # A threshold on a wiring the bench leaves out could never be evaluated.
        for key in options["thresholds"]:
            left_out = [c for c in throughput.named_configs(str(key)) or () if c not in wirings]
            if left_out:
                out.append(f"bench_wirings leaves out {', '.join(left_out)}, which threshold "
                           f"{key!r} names: measure it or drop the threshold")
    pps = options.get("bench_udp_pps")
    if pps is not None and (isinstance(pps, bool) or not isinstance(pps, int) or pps < 0):
        out.append(f"bench_udp_pps: {pps!r}: datagrams a second in each flow, a whole number "
                   "(0: as fast as the board sends)")
    iothread = options.get("bench_iothread")
    if iothread is not None and not (isinstance(iothread, str) and all(
            re.fullmatch(r"[a-z][a-z0-9-]*=[^,=\s]+", p) and not p.startswith("id=")
            for p in iothread.split(","))):
        out.append(f"bench_iothread: {iothread!r}: QEMU iothread properties, e.g. "
                   "poll-max-ns=0 (comma-separated, no id=)")
    sizes = options.get("bench_vcpus")
    if sizes is not None:
        if not isinstance(sizes, list) or not sizes or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            out.append(f"bench_vcpus: {sizes!r}: write the guest sizes to measure as a list "
                       "of whole numbers, e.g. [1, 2, 4]")
        else:
            if options.get("thresholds") and 1 not in sizes:
                out.append(f"bench_vcpus: {sizes!r}: the thresholds are taken with one vCPU; "
                           "measure it too (add 1) or drop the thresholds")
            pinned = vmm.pinned_vcpus(options.get("pin_vmm"))
            if pinned is not None and max(sizes) > pinned:
                out.append(f"bench_vcpus: {max(sizes)} vCPUs, but pin_vmm.vcpus places "
                           f"{pinned}: give each vCPU its board CPU")
    return out


def missing_options(options: dict[str, Any], needed: dict[str, list[str]]) -> list[str]:
    """`needed`: option -> the cases that read it (their `needs_options` markers). One line per
    option the target leaves out, naming the cases, so the run stops before power-on."""
    return [f"options.{key} is not declared, and {', '.join(sorted(cases)[:3])}"
            f"{f' and {len(cases) - 3} more' if len(cases) > 3 else ''} read it: declare it "
            "(see places/virtual.yaml) or deselect those cases"
            for key, cases in sorted(needed.items()) if options.get(key) is None]


def target_options(path: str | Path, target: str) -> dict[str, Any]:
    """The `options:` of one target of an environment file ({} if it has none)."""
    targets = (load(Path(path).read_text()) or {}).get("targets") or {}
    options = (targets.get(target) or {}).get("options") or {}
    return options if isinstance(options, dict) else {}


def driver_settings(drivers: Any, cls: str) -> list[dict[str, Any]]:
    """The settings of each `cls` driver of a target's `drivers:` (a list of one-key
    mappings, or a mapping), as labgrid reads both."""
    entries = drivers if isinstance(drivers, list) else [drivers]
    return [e[cls] or {} for e in entries
            if isinstance(e, dict) and cls in e and isinstance(e[cls] or {}, dict)]


def guest_vmm_problems(drivers: Any) -> list[str]:
    """Where a GuestVMMDriver puts the guest's consoles: a virtio console's `serial` becomes a
    -chardev (vmm.serial_problems); a uart's is QEMU's own -serial, whatever QEMU takes."""
    out = []
    for settings in driver_settings(drivers, "GuestVMMDriver"):
        console = settings.get("console", vmm.GuestConfig.console)
        out += vmm.console_problems(console)
        if console == "virtio":
            out += vmm.serial_problems(settings.get("serial", vmm.GuestConfig.serial))
    return [f"GuestVMMDriver {p}" for p in out]


def problems(data: Any) -> list[str]:
    """What is wrong with a parsed environment, in words that say what to fix."""
    if not isinstance(data, dict):
        return ["the file must be a mapping with a 'targets:' key"]
    targets = data.get("targets")
    if not isinstance(targets, dict) or not targets:
        return ["'targets:' is missing or empty: name at least one target (e.g. 'main')"]
    out = []
    for name, target in targets.items():
        if not isinstance(target, dict):
            out.append(f"target '{name}' must be a mapping with resources/drivers")
            continue
        drivers = target.get("drivers")
        if drivers is not None and not isinstance(drivers, (dict, list)):
            out.append(f"target '{name}': 'drivers:' must be a mapping or a list")
        out += [f"target '{name}': {p}" for p in guest_vmm_problems(drivers)]
        options = target.get("options") or {}
        if not isinstance(options, dict):
            out.append(f"target '{name}': 'options:' must be a mapping")
        else:
            # A misspelt threshold would never be compared: the gate would pass unapplied.
            out += [f"target '{name}': options.thresholds: {p}"
                    for p in throughput.threshold_problems(options.get("thresholds"))]
            out += [f"target '{name}': options.{p}"
                    for p in costmodel.problems(options.get(costmodel.OPTION))]
            out += [f"target '{name}': options.{p}"
                    for p in vmm.gic_problems(options.get(vmm.GIC_OPTION))]
            out += [f"target '{name}': options.{p}"
                    for p in option_problems(options)]
            cpus = options.get("board_cpus")
            out += [f"target '{name}': options.{p}" for p in
                    vmm.pin_problems(options.get("pin_vmm"), cpus if isinstance(cpus, int) else None)]
            if options.get(costmodel.OPTION) and "VirtualBoardDriver" not in str(drivers):
                # Only an emulated board can count instructions instead of time.
                out.append(f"target '{name}': options.icount needs a VirtualBoardDriver; "
                           "a real board's figures are wall-clock")
        remote = target.get("resources", {})
        if "RemotePlace" not in str(remote) and drivers is None:
            out.append(f"target '{name}' has no drivers: add a power/console driver and "
                       "BoardGuestStrategy, or a RemotePlace resource")
    return out


def check(path: str | Path) -> None:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"environment file {p} does not exist: pass --lg-env with a file "
                          "from places/ (e.g. places/virtual.yaml)")
    try:
        data = load(p.read_text())
    except YAMLError as e:
        raise ConfigError(f"environment file {p} is not valid YAML: {e}") from e
    found = problems(data)
    if found:
        raise ConfigError(f"environment file {p}: " + "; ".join(found))


def check_target_name(path: str | Path, wanted: str | None) -> None:
    """`--hil-target NAME` names a target of the file (checked before any reservation)."""
    if wanted is None:
        return
    names = list((load(Path(path).read_text()) or {}).get("targets") or {})
    if wanted not in names:
        raise ConfigError(f"--hil-target {wanted}: the environment has no such target (it has "
                          f"{', '.join(names) or 'none'})")
