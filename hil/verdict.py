"""Who must act on a result: failure kinds by phase, and the exit code a scheduler acts on.

Pure decisions over what a run recorded; the pytest plugin (hil/plugin) does the I/O.

A failure is classified by the phase it happened in, not by its exception class alone:
until the board answers on its shell the lab is at fault whatever went wrong; once it does, the
stack under test is at fault when it misbehaves, and the lab when its transport or the harness
fails. An error that nothing classifies is infrastructure: a verdict of "do not ship" must never
come from a harness bug.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from hil.errors import BootTimeout, InfrastructureError, ProductFailure, ShellTimeout


class Kind(StrEnum):
    PRODUCT = "product"  # the stack under test misbehaved: do not ship
    INFRASTRUCTURE = "infrastructure"  # the lab could not do its job: run again


class Phase(StrEnum):
    LAB = "lab"  # environment, artefacts, power, consoles, board boot and board shell
    GUEST_BOOT = "guest-boot"  # starting the guest VMM on a board that answers
    TEST = "test"  # the testcase's own steps
    KERNEL_LOG = "kernel-log"  # the kernel log scan after the testcase


# Errors of the product once the lab works. Everything else that is not an
# InfrastructureError (a KeyError in a testcase, a labgrid error) is the harness's.
PRODUCT_ERRORS: tuple[type[BaseException], ...] = (AssertionError, ProductFailure)


def classify(phase: Phase, error: BaseException, board_answers: bool | None = None) -> Kind:
    """The failure kind of `error` raised in `phase`.

    `board_answers` says whether the board's shell still answered after the error; it is
    asked only for guest-side failures (None: not asked, or not known).
    """
    if phase is Phase.LAB:
        return Kind.INFRASTRUCTURE
    guest_side = (isinstance(error, ShellTimeout) and error.where == "guest") or (
        phase is Phase.GUEST_BOOT and isinstance(error, BootTimeout))
    if guest_side:
        # A guest that stops answering while its board still does is the product's fault;
        # if the board is gone too, the lab lost it.
        return Kind.PRODUCT if board_answers else Kind.INFRASTRUCTURE
    if isinstance(error, InfrastructureError):
        return Kind.INFRASTRUCTURE
    if isinstance(error, PRODUCT_ERRORS):
        return Kind.PRODUCT
    return Kind.INFRASTRUCTURE


def needs_board_probe(phase: Phase, error: BaseException) -> bool:
    """Whether classify() depends on the board still answering."""
    return phase is not Phase.LAB and (
        (isinstance(error, ShellTimeout) and error.where == "guest")
        or (phase is Phase.GUEST_BOOT and isinstance(error, BootTimeout)))


def needs_power_cycle(error: BaseException) -> bool:
    """After a shell timeout or a console out of sync, the next case must not start from this
    board: its console may still deliver the old command's output."""
    return isinstance(error, ShellTimeout) or type(error).__name__ in ("TIMEOUT", "EOF")


class ExitCode(IntEnum):
    """What `pytest --lg-env` and `hil qualify` exit with (documented in the README)."""

    PASSED = 0  # every selected case ran and passed
    PRODUCT_FAILURE = 1  # at least one product failure: do not ship
    INCONCLUSIVE = 2  # infrastructure failures only, an interrupted run, or no lab reached
    USAGE_ERROR = 4  # bad command line, environment file or board options (pytest's code)
    NOTHING_QUALIFIED = 5  # no selected case ran: all skipped or deselected


@dataclass
class RunOutcome:
    """What a run did, as counted by the plugin."""

    passed: int = 0
    failures: Counter[Kind] = field(default_factory=Counter)
    # Skip reason -> number of cases; labgrid names the missing features in its reason.
    skipped: Counter[str] = field(default_factory=Counter)
    lab_reached: bool = False
    interrupted: bool = False


BROKEN_STRATEGY = "is in broken state"  # labgrid's skip reason once never_retry stored an error
MISSING_FEATURES = "unsupported feature(s): "  # labgrid's skip reason for lg_feature


def skipped_for_broken_lab(outcome: RunOutcome) -> int:
    return sum(n for reason, n in outcome.skipped.items() if BROKEN_STRATEGY in reason)


def lab_broke(outcome: RunOutcome) -> bool:
    """An infrastructure failure, or cases skipped because the lab broke under them."""
    return bool(outcome.failures[Kind.INFRASTRUCTURE] or skipped_for_broken_lab(outcome))


def missing_features(outcome: RunOutcome) -> Counter[str]:
    """Feature -> cases skipped because the board lacks it."""
    found: Counter[str] = Counter()
    for reason, n in outcome.skipped.items():
        if MISSING_FEATURES in reason:
            for feature in reason.split(MISSING_FEATURES, 1)[1].split(","):
                found[feature.strip()] += n
    return found


def exit_code(outcome: RunOutcome) -> ExitCode:
    if outcome.failures[Kind.PRODUCT]:
        return ExitCode.PRODUCT_FAILURE
    if (outcome.failures[Kind.INFRASTRUCTURE] or outcome.interrupted
            or skipped_for_broken_lab(outcome)):
        return ExitCode.INCONCLUSIVE
    if not outcome.passed:
        return ExitCode.NOTHING_QUALIFIED
    # Cases that passed without a board prove nothing about one.
    if not outcome.lab_reached:
        return ExitCode.INCONCLUSIVE
    return ExitCode.PASSED


# A release's verdict is its worst board's, in this order. A product failure decides whatever
# else happened; a usage error comes before an inconclusive board because running again cannot
# cure it; a board that qualified nothing keeps the release from passing (it was meant to be
# qualified and was not).
RELEASE_PRECEDENCE = (ExitCode.PRODUCT_FAILURE, ExitCode.USAGE_ERROR, ExitCode.INCONCLUSIVE,
                      ExitCode.NOTHING_QUALIFIED, ExitCode.PASSED)


def release_exit_code(codes: Iterable[int]) -> ExitCode:
    """The one rule for a release over its boards' exit codes, used by `hil qualify --release`'s
    exit code, its terminal line and `hil report`. A code outside ExitCode (pytest's 3, a
    session killed by a signal) proves nothing: inconclusive. No board at all: no board
    reached, inconclusive."""
    seen = {ExitCode(c) if c in ExitCode._value2member_map_ else ExitCode.INCONCLUSIVE
            for c in codes}
    if not seen:
        return ExitCode.INCONCLUSIVE
    return next(c for c in RELEASE_PRECEDENCE if c in seen)


VERDICTS = {
    ExitCode.PASSED: "pass: every selected case passed",
    ExitCode.PRODUCT_FAILURE: "do not ship: the stack under test failed",
    ExitCode.INCONCLUSIVE: "inconclusive: the lab failed, run again",
    ExitCode.USAGE_ERROR: "usage error: fix the command line or the environment file",
    ExitCode.NOTHING_QUALIFIED: "nothing qualified: no selected case ran",
}
