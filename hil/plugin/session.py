"""State a qualification run shares between its hooks and fixtures: the run's directory, what
each case ended as, and the lab (strategy) the cases use."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from labgrid.strategy import StrategyError

from hil import verdict
from hil.errors import HilError
from hil.labgrid import kernel_logs
from hil.labgrid.shell import Shell
from hil.measure.kernel_log import Finding
from hil.verdict import Kind, Phase

FAILURE_KIND = "hil_failure_kind"
PHASE = pytest.StashKey[Phase]()
# Kernel reports of a guest that the case restarted, kept until the case ends.
EARLIER_REPORTS = pytest.StashKey[dict[str, list[Finding]]]()


@dataclass
class Run:
    directory: Path
    lab: Lab | None = None
    target: str = "main"  # the environment's target this run qualifies (--hil-target)
    # nodeid -> "passed", a failure Kind's value, or "skipped: <reason>"
    cases: dict[str, str] = field(default_factory=dict)
    not_gated: list[str] = field(default_factory=list)
    interrupted: bool = False
    console_dir: Path | None = None
    # nodeid -> each console log's size when the case started (hil.results.console.sizes)
    console_marks: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, nodeid: str, result: str) -> None:
        """A case's result; a failure in any of its phases outranks a pass, and a product
        failure outranks an infrastructure one."""
        rank = {"passed": 0, Kind.INFRASTRUCTURE.value: 2, Kind.PRODUCT.value: 3}
        old = self.cases.get(nodeid)
        if old is None or rank.get(result, 1) > rank.get(old, 1):
            self.cases[nodeid] = result

    def outcome(self) -> verdict.RunOutcome:
        out = verdict.RunOutcome(lab_reached=bool(self.lab and self.lab.reached),
                                 interrupted=self.interrupted)
        for result in self.cases.values():
            if result == "passed":
                out.passed += 1
            elif result.startswith("skipped: "):
                out.skipped[result.removeprefix("skipped: ")] += 1
            else:
                out.failures[Kind(result)] += 1
        return out


RUN = pytest.StashKey[Run]()


def current_run(config: pytest.Config) -> Run | None:
    """The qualification run, or None in a pytest run without an environment."""
    return config.stash.get(RUN, None)


def cause(error: BaseException) -> BaseException:
    """What really failed: labgrid's never_retry wraps it in a StrategyError."""
    while isinstance(error, StrategyError) and error.__cause__ is not None:
        error = error.__cause__
    return error


def describe(error: BaseException) -> str:
    return str(error) if isinstance(error, HilError) else f"{type(error).__name__}: {error}"


class Lab:
    """One board's strategy as the cases reach it, with the phase each step runs in."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.reached = False  # the board answered on its shell at least once

    @contextlib.contextmanager
    def phase(self, node: pytest.Item, phase: Phase) -> Iterator[None]:
        """Steps inside run in `phase`; on an error the phase stays set (no finally), for
        the classification to read."""
        node.stash[PHASE] = phase
        yield
        node.stash[PHASE] = Phase.TEST

    def reach(self, state: str, node: pytest.Item, **guest_changes: Any) -> Shell:
        """Bring the board to `state` (the guest with `guest_changes` to its VMM settings);
        fail the case with one clear message, classified by phase, if it cannot."""
        try:
            with self.phase(node, Phase.LAB):
                self.strategy.ensure("board")
            self.reached = True
            if state == "guest":
                with self.phase(node, Phase.GUEST_BOOT):
                    # A guest restarted with other settings takes its messages with it:
                    # read them before.
                    if guest_changes and self.guest_up():
                        earlier = node.stash.setdefault(EARLIER_REPORTS, {})
                        for side, found in self.kernel_reports(node, ("guest",)).items():
                            earlier.setdefault(side, []).extend(found)
                    self.strategy.ensure("guest", **guest_changes)
        except Exception as e:
            failure = cause(e)
            kind = self.classify(node.stash.get(PHASE, Phase.LAB), failure)
            node.user_properties.append((FAILURE_KIND, kind.value))
            node.stash[PHASE] = Phase.TEST
            # Outside the except block, so the message is not chained to the traceback.
        else:
            shell: Shell = self.strategy.shell(state)
            return shell
        pytest.fail(describe(failure), pytrace=False)

    def classify(self, phase: Phase, error: BaseException) -> Kind:
        """The failure's kind; recovers the board for the next case when its console is out
        of sync."""
        answers = self.board_answers() if verdict.needs_board_probe(phase, error) else None
        if verdict.needs_power_cycle(error):
            # labgrid's own recovery: the next transition starts from `off`, power-cycling.
            self.strategy.invalidate()
        return verdict.classify(phase, error, answers)

    def power_off(self) -> bool:
        """At the end of a run: a board left on at its boot loader or shell spins for nobody
        (a virtual board's emulator takes a core's share). A switch that fails here costs no
        result already measured: it is a warning (False), and the next run power-cycles
        anyway."""
        try:
            self.strategy.transition("off")
        except Exception as e:  # teardown: report, never turn a verdict
            warnings.warn(f"the board could not be powered off after the run: {describe(e)}",
                          stacklevel=1)
            return False
        return True

    def guest_up(self) -> bool:
        return "guest" in self.strategy.path and self.strategy.vmm.running is not None

    def kernel_reports(self, node: pytest.Item,
                       sides: tuple[str, ...] = ("board", "guest")) -> dict[str, list[Finding]]:
        """Kernel reports (WARN, BUG, Oops, lockdep, ...) on each side that is up, since the
        previous look; those the case's `kernel_log_allows` marker provokes on purpose are
        left out."""
        allow = [p for m in node.iter_markers("kernel_log_allows") for p in m.args]
        up = {"board": "board" in self.strategy.path, "guest": self.guest_up()}
        return {side: kernel_logs.check_since_last(self.strategy.shell(side), allow)
                for side in sides if up[side]}

    def case_kernel_reports(self, node: pytest.Item) -> dict[str, list[Finding]]:
        """All the case's kernel reports: now, and of guests it restarted before."""
        found = self.kernel_reports(node)
        for side, earlier in node.stash.get(EARLIER_REPORTS, {}).items():
            found[side] = earlier + found.get(side, [])
        return found

    def board_answers(self) -> bool:
        try:
            return bool(self.strategy.board_shell.run("true", timeout=10)[2] == 0)
        except Exception:
            return False
