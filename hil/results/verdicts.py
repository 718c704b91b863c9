"""The verdict of each board and of a release, rebuilt from what a run recorded.

Pure: the same rules as the plugin's (hil/verdict.py exit_code), applied to the JUnit cases,
so that a run that was interrupted before it wrote verdict.json still gets one, and one that
did write it is checked against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hil import verdict
from hil.results.junit import Case
from hil.verdict import ExitCode, Kind

# What a release decision reads as, per exit code.
DECISIONS = {
    ExitCode.PASSED: "ship",
    ExitCode.PRODUCT_FAILURE: "do not ship",
    ExitCode.INCONCLUSIVE: "inconclusive",
    ExitCode.USAGE_ERROR: "usage error",
    ExitCode.NOTHING_QUALIFIED: "nothing qualified",
}


@dataclass(frozen=True)
class BoardVerdict:
    code: ExitCode
    outcome: verdict.RunOutcome
    notes: tuple[str, ...] = ()

    @property
    def decision(self) -> str:
        return DECISIONS[self.code]

    @property
    def text(self) -> str:
        return verdict.VERDICTS[self.code]


def outcome_of(cases: Iterable[Case], *, finished: bool,
               recorded: dict[str, Any] | None) -> verdict.RunOutcome:
    """The plugin's RunOutcome from the cases; `finished`: the run wrote its verdict."""
    out = verdict.RunOutcome(interrupted=not finished)
    reached = False
    for c in cases:
        if c.outcome == "passed":
            out.passed += 1
            reached = True
        elif c.outcome == "skipped":
            out.skipped[c.message] += 1
        else:
            out.failures[Kind(c.kind or Kind.INFRASTRUCTURE.value)] += 1
            # A product failure is only ever classified once the board answered.
            reached = reached or c.kind == Kind.PRODUCT.value
    if recorded is not None:
        out.interrupted = out.interrupted or bool(recorded.get("interrupted"))
        reached = bool(recorded.get("lab_reached", reached))
    out.lab_reached = reached
    return out


def board_verdict(cases: Iterable[Case] | None, recorded: dict[str, Any] | None) -> BoardVerdict:
    """A board's verdict from its JUnit cases (None: no JUnit file) and the verdict.json the
    run wrote (None: it did not finish)."""
    notes: list[str] = []
    if cases is None:
        if recorded is not None:
            code = ExitCode(int(recorded.get("exit_code", ExitCode.INCONCLUSIVE)))
            notes.append("no JUnit file: the verdict is the one verdict.json recorded")
            return BoardVerdict(code, verdict.RunOutcome(interrupted=True), tuple(notes))
        notes.append("neither JUnit file nor verdict.json: nothing says what ran")
        return BoardVerdict(ExitCode.INCONCLUSIVE, verdict.RunOutcome(interrupted=True),
                            tuple(notes))
    cases = list(cases)
    out = outcome_of(cases, finished=recorded is not None, recorded=recorded)
    code = verdict.exit_code(out)
    if recorded is None:
        notes.append("the run was interrupted (no verdict.json): inconclusive unless a product "
                     "failure was already recorded")
    elif int(recorded.get("exit_code", -1)) != int(code):
        notes.append(f"verdict.json recorded exit {recorded.get('exit_code')}, the JUnit cases "
                     f"give {int(code)}: the rebuilt one is shown")
    return BoardVerdict(code, out, tuple(notes))


def counts(cases: Iterable[Case]) -> Counter[str]:
    """passed / product / infrastructure / skipped."""
    out: Counter[str] = Counter()
    for c in cases:
        out[c.kind if c.outcome == "failed" and c.kind else c.outcome] += 1
    return out
