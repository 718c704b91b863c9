"""The hil pytest plugin: `board` and `guest` fixtures, result recording, failure kinds.

Registered as a `pytest11` entry point; it rides on labgrid's plugin (`--lg-env`, `target`,
`strategy`) and adds what a qualification run needs on top.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labgrid.consoleloggingreporter import ConsoleLoggingReporter

from hil.build.cache import default_images
from hil.errors import HilError, InfrastructureError
from hil.lab import envfile
from hil.lab.shell import Shell

# The images `hil firmware build` made: under HIL_CACHE, wherever that is.
os.environ.setdefault("HIL_IMAGES", str(default_images()))

FAILURE_KIND = "hil_failure_kind"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil")
    group.addoption("--hil-results", default="results", metavar="DIR",
                    help="where measurements and console logs go (default: results)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "board: needs a shell on a board")
    config.addinivalue_line("markers", "guest: needs a shell in the nested KVM guest")
    config.addinivalue_line("markers", "throughput: measures iperf3 throughput")
    config.addinivalue_line("markers", "irqfd: counts who injects the guest's interrupts")
    lg_env = config.getoption("lg_env", None) or os.environ.get("LG_ENV")
    if lg_env:
        try:
            envfile.check(lg_env)
        except HilError as e:
            raise pytest.UsageError(str(e)) from None
        # Keep every console on disk (in the results unless the user chose --lg-log). The
        # reporter is started here rather than by labgrid so that error messages can name it.
        log_dir = config.getoption("lg_log", None) or str(
            Path(config.getoption("hil_results")) / "console")
        config.option.lg_log = None
        ConsoleLoggingReporter.start(os.path.abspath(log_dir))
        config.add_cleanup(ConsoleLoggingReporter.stop)


class Lab:
    """One board's strategy, remembering an infrastructure failure so later tests fail fast."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.broken: str | None = None

    def reach(self, state: str, node: pytest.Item, **guest_changes: Any) -> Shell:
        """Bring the board to `state` (the guest with `guest_changes` to its VMM settings);
        fail the test with one clear message if it cannot."""
        if self.broken:
            node.user_properties.append((FAILURE_KIND, "infrastructure"))
            pytest.fail(f"lab unavailable: {self.broken}", pytrace=False)
        try:
            if guest_changes:
                self.strategy.ensure("board")
                self.strategy.boot_guest(**guest_changes)
            else:
                self.strategy.ensure(state)
        except HilError as e:
            failure = e
        else:
            shell: Shell = self.strategy.shell(state)
            return shell
        # Outside the except block, so the message is not chained to the original traceback.
        infra = isinstance(failure, InfrastructureError)
        if infra:
            self.broken = str(failure)
        node.user_properties.append((FAILURE_KIND, "infrastructure" if infra else "product"))
        pytest.fail(str(failure), pytrace=False)


@pytest.fixture(scope="session")
def lab(strategy: Any, request: pytest.FixtureRequest) -> Iterator[Lab]:
    lab = Lab(strategy)
    t0 = time.monotonic()
    yield lab
    # What a run cost: reports and the suite benchmark read this.
    session = {"wall_s": round(time.monotonic() - t0, 1), "boots": strategy.boots,
               "timings": strategy.timings}
    path = Path(request.config.getoption("hil_results")) / "session.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(session, indent=2) + "\n")


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
    """The guest's VMM driver on the board (monitor commands, log, restart)."""
    return lab.strategy.vmm


@pytest.fixture(scope="session")
def board_options(target: Any) -> dict[str, Any]:
    """What the board declares about itself under its target's `options:` in the env file
    (CPU count, thresholds, iterations)."""
    options: dict[str, Any] = target.env.config.data["targets"][target.name].get("options") or {}
    return options


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
    path = Path(request.config.getoption("hil_results")) / "measurements.jsonl"
    yield Measurements(request.node, path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.excinfo is not None:
        known = [v for k, v in item.user_properties if k == FAILURE_KIND]
        if known:
            kind = known[-1]
        else:
            kind = "infrastructure" if call.excinfo.errisinstance(InfrastructureError) else "product"
            item.user_properties.append((FAILURE_KIND, kind))
        if (FAILURE_KIND, kind) not in report.user_properties:
            report.user_properties.append((FAILURE_KIND, kind))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    kinds: dict[str, int] = {}
    for rep in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", []):
        for key, value in getattr(rep, "user_properties", []):
            if key == FAILURE_KIND:
                kinds[value] = kinds.get(value, 0) + 1
    if kinds:
        terminalreporter.write_sep("-", "hil failure kinds")
        for kind, n in sorted(kinds.items()):
            terminalreporter.write_line(f"{kind}: {n}")
