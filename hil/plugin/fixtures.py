"""Fixtures of a qualification run: the board and guest shells, the guest's VMM, what the board
declares about itself, measurements, and the run's provenance."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labgrid.resource import RemotePlace

from hil import verdict
from hil.labgrid import vmm as vmm_
from hil.labgrid.place import place_tags
from hil.labgrid.shell import Shell
from hil.plugin import reservation
from hil.plugin.session import Lab, current_run
from hil.results import provenance as provenance_
from hil.results import rundir


@pytest.fixture(scope="session")
def lab(strategy: Any, request: pytest.FixtureRequest) -> Iterator[Lab]:
    lab = Lab(strategy)
    run = current_run(request.config)
    if run is not None:
        run.lab = lab
    t0 = time.monotonic()
    yield lab
    if run is not None:
        # Before the board is switched: a case that failed on a lost place may have ended the
        # run before the watch confirmed the loss, and a lost board is not ours to switch.
        reservation.finishing(request.config, verdict.lab_broke(run.outcome()))
    held = reservation.held(request.config)
    if request.config.getoption("hil_keep_powered"):
        power = "left on (--hil-keep-powered)"
    elif held is not None and held.lost:
        # No longer this session's: never switch a board that another session may hold now,
        # nor wait out a power switch that stopped answering.
        power = f"left as it was: the place was lost ({held.lost.reason.value})"
    else:
        power = "off" if lab.power_off() else "not off: the switch failed"
    if run is not None:
        # What a run cost: reports and the suite benchmark read this.
        session = {"wall_s": round(time.monotonic() - t0, 1), "boots": strategy.boots,
                   "timings": strategy.timings, "power_after_run": power}
        rundir.write_atomic(run.directory / "session.json", json.dumps(session, indent=2) + "\n")


@pytest.fixture
def board(lab: Lab, request: pytest.FixtureRequest) -> Shell:
    """A shell on the board, with KVM and vhost-net ready."""
    return lab.reach("board", request.node)


@pytest.fixture
def guest(lab: Lab, board: Shell, request: pytest.FixtureRequest) -> Shell:
    """A shell in the KVM guest nested on the board."""
    return lab.reach("guest", request.node)


@pytest.fixture
def boot_guest(lab: Lab, board: Shell, request: pytest.FixtureRequest) -> Any:
    """`boot_guest(**changes)` restarts the guest with other VMM settings (see vmm.GuestConfig)
    and returns its shell; the next test gets the board's own guest back."""

    def boot(**changes: Any) -> Shell:
        return lab.reach("guest", request.node, **changes)

    return boot


@pytest.fixture
def vmm(lab: Lab, board: Shell) -> Any:
    """The guest's VMM driver on the board (monitor commands, log, restart, the guest's DTB),
    usable from the board's state on: a case may ask it before any guest ran."""
    driver = lab.strategy.vmm
    lab.strategy.target.activate(driver)  # it needs only the board's shell, active here
    return driver


@pytest.fixture(scope="session")
def board_options(target: Any) -> dict[str, Any]:
    """What the board declares about itself under its target's `options:` in the env file
    (CPU count, thresholds, iterations)."""
    options: dict[str, Any] = dict(
        target.env.config.data["targets"][target.name].get("options") or {})
    # The GIC: declared here, or by the lab's tag of the board's place (see vmm.board_gic).
    options[vmm_.GIC_OPTION] = vmm_.board_gic(options.get(vmm_.GIC_OPTION), place_tags(target))
    return options


@pytest.fixture(scope="session", autouse=True)
def provenance(request: pytest.FixtureRequest,
               record_testsuite_property: Any) -> dict[str, Any] | None:
    """What this run qualifies, recorded before anything is powered: provenance.json and a
    copy of the environment file in the run's directory, and JUnit testsuite properties."""
    run = current_run(request.config)
    if run is None:
        return None
    env = request.getfixturevalue("env")
    target = env.get_target(run.target)
    try:
        remote: str | None = target.get_resource(RemotePlace, wait_avail=False).name
    except Exception:
        remote = None
    options = env.config.data["targets"][target.name].get("options") or {}
    env_file = Path(env.config_file)
    prov = provenance_.collect(env_file, target.name, options, env.config.get_images(), remote)
    rundir.write_atomic(run.directory / "provenance.json", json.dumps(prov, indent=2) + "\n")
    shutil.copyfile(env_file, run.directory / "environment.yaml")
    for name, value in provenance_.properties(prov):
        record_testsuite_property(name, value)
    return prov


class Measurements:
    """Structured results of a test: into the JUnit XML and a JSON-lines file for reports."""

    def __init__(self, node: pytest.Item, path: Path) -> None:
        self.node = node
        self.path = path

    def record(self, name: str, value: Any, unit: str = "", **context: Any) -> None:
        self.node.user_properties.append((name, value))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"test": self.node.nodeid, "name": name, "value": value, "unit": unit,
               "time": time.time(), **context}
        with self.path.open("a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


@pytest.fixture
def measurements(request: pytest.FixtureRequest) -> Iterator[Measurements]:
    run = current_run(request.config)
    directory = run.directory if run else Path(request.config.rootpath) / "results"
    yield Measurements(request.node, directory / "measurements.jsonl")
