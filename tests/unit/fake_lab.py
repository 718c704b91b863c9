"""An environment file for a board made of fake drivers (tests/lab_fakes.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# By module name: labgrid runs a file named by path again on every load, and registering the
# same driver twice is an error.
FAKES = "tests.lab_fakes"


def env_file(tmp: Path, *, board_boot: str = "ready", guest_boot: str = "ready",
             board_hang_on: tuple[str, ...] = (), guest_hang_on: tuple[str, ...] = (),
             board_fail_on: tuple[str, ...] = (), guest_warn_on: tuple[str, ...] = (),
             options: dict[str, Any] | None = None, power_missing: str = "",
             features: tuple[str, ...] = (), targets: tuple[str, ...] = ("main",)) -> Path:
    log = str(tmp / "events.log")
    data = {
        "imports": [FAKES, "hil.labgrid"],
        "targets": {"main": {
            "features": list(features),
            "options": options or {"board_cpus": 2, "thresholds": {}},
            "drivers": [
                {"LoggingPowerDriver": {"name": "power", "log": log, "missing": power_missing}},
                {"ScriptedConsoleDriver": {"name": "board-console", "boot": board_boot}},
                {"ScriptedShellDriver": {"name": "board-shell", "log": log,
                                         "hang_on": list(board_hang_on),
                                         "fail_on": list(board_fail_on)}},
                {"GuestVMMDriver": {"name": "vmm", "bindings": {"shell": "board-shell"}}},
                {"ScriptedConsoleDriver": {"name": "guest-console", "role": "guest",
                                           "boot": guest_boot}},
                {"ScriptedShellDriver": {"name": "guest-shell", "log": log,
                                         "hang_on": list(guest_hang_on),
                                         "warn_on": list(guest_warn_on)}},
                {"BoardGuestStrategy": {
                    "bindings": {"power": "power", "board_console": "board-console",
                                 "board_shell": "board-shell", "vmm": "vmm",
                                 "guest_console": "guest-console", "guest_shell": "guest-shell"},
                    "board_timeout": 1, "guest_timeout": 1}},
            ],
        }},
    }
    # Several boards in one file (as a lab's file has): the same board under each name, told
    # apart by its CPU count (1, 2, ...).
    board = data["targets"]["main"]
    data["targets"] = {name: {**copy.deepcopy(board),
                              "options": {**board["options"], "board_cpus": i + 1}}
                       if len(targets) > 1 else board for i, name in enumerate(targets)}
    path = tmp / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def events(tmp: Path) -> list[str]:
    p = tmp / "events.log"
    return p.read_text().splitlines() if p.exists() else []
