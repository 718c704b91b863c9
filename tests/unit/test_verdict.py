"""Failure kinds by phase, and the exit code a scheduler acts on."""

from collections import Counter
from pathlib import Path

import pytest
from pexpect import TIMEOUT

from hil import verdict
from hil.errors import (
    ArtifactMissing,
    BootTimeout,
    CommandFailed,
    ConfigError,
    ProductFailure,
    ShellTimeout,
)
from hil.verdict import ExitCode, Kind, Phase, RunOutcome

PRODUCT, INFRA = Kind.PRODUCT, Kind.INFRASTRUCTURE
GUEST_HANG = ShellTimeout("guest", "ping -c 3 169.254.77.1", 60)
BOARD_HANG = ShellTimeout("board", "cat /proc/interrupts", 60)

# (phase, error, board still answers) -> kind
TABLE = [
    # Until the board answers on its shell the lab is at fault, whatever the error says.
    (Phase.LAB, ConfigError("bad env"), None, INFRA),
    (Phase.LAB, ArtifactMissing("no image"), None, INFRA),
    (Phase.LAB, ProductFailure("board panicked"), None, INFRA),
    (Phase.LAB, AssertionError(), None, INFRA),
    (Phase.LAB, TIMEOUT("login"), None, INFRA),
    # Starting the guest: a guest that hangs while its board answers is the product's fault.
    (Phase.GUEST_BOOT, BootTimeout("guest did not reach its prompt"), True, PRODUCT),
    (Phase.GUEST_BOOT, BootTimeout("guest did not reach its prompt"), False, INFRA),
    (Phase.GUEST_BOOT, ProductFailure("guest panicked"), None, PRODUCT),
    (Phase.GUEST_BOOT, ArtifactMissing("board lacks /guest/Image"), None, INFRA),
    (Phase.GUEST_BOOT, TIMEOUT("board shell"), None, INFRA),
    # The testcase: assertions and failed commands are the product's; transport is the lab's.
    (Phase.TEST, AssertionError("mode"), None, PRODUCT),
    (Phase.TEST, CommandFailed("guest", "ping", 1, ""), None, PRODUCT),
    (Phase.TEST, GUEST_HANG, True, PRODUCT),
    (Phase.TEST, GUEST_HANG, False, INFRA),
    (Phase.TEST, BOARD_HANG, None, INFRA),
    (Phase.TEST, TIMEOUT("raw console"), None, INFRA),
    (Phase.TEST, ConnectionResetError(), None, INFRA),
    # Nothing classifies a harness bug as a product failure.
    (Phase.TEST, KeyError("vmms"), None, INFRA),
    (Phase.TEST, TypeError(), None, INFRA),
    (Phase.KERNEL_LOG, ProductFailure("WARNING: CPU: 0 PID: 1 at ..."), None, PRODUCT),
]


@pytest.mark.parametrize(("phase", "error", "answers", "kind"), TABLE,
                         ids=[f"{p.value}-{type(e).__name__}-{a}" for p, e, a, _ in TABLE])
def test_failures_are_classified_by_phase(phase, error, answers, kind):
    assert verdict.classify(phase, error, answers) is kind


def test_the_board_is_asked_only_when_the_guest_side_failed():
    assert verdict.needs_board_probe(Phase.TEST, GUEST_HANG)
    assert verdict.needs_board_probe(Phase.GUEST_BOOT, BootTimeout("x"))
    assert not verdict.needs_board_probe(Phase.TEST, BOARD_HANG)
    assert not verdict.needs_board_probe(Phase.LAB, BootTimeout("x"))


def test_a_shell_timeout_or_a_broken_console_forces_a_power_cycle():
    assert verdict.needs_power_cycle(GUEST_HANG) and verdict.needs_power_cycle(BOARD_HANG)
    assert verdict.needs_power_cycle(TIMEOUT("x"))
    assert not verdict.needs_power_cycle(AssertionError())


def outcome(passed=0, product=0, infra=0, skipped=None, reached=True, interrupted=False):
    return RunOutcome(passed, Counter({PRODUCT: product, INFRA: infra}), Counter(skipped or {}),
                      reached, interrupted)


FEATURE_SKIP = "unsupported feature(s): multi-irq-vmm"
BROKEN_SKIP = "BoardGuestStrategy is in broken state"


@pytest.mark.parametrize(("run", "code"), [
    (outcome(passed=28), ExitCode.PASSED),
    (outcome(passed=13, skipped={FEATURE_SKIP: 15}), ExitCode.PASSED),
    (outcome(passed=27, product=1), ExitCode.PRODUCT_FAILURE),
    (outcome(passed=20, product=1, infra=7), ExitCode.PRODUCT_FAILURE),
    (outcome(passed=27, infra=1), ExitCode.INCONCLUSIVE),
    (outcome(infra=1, skipped={BROKEN_SKIP: 27}, reached=False), ExitCode.INCONCLUSIVE),
    (outcome(passed=3, interrupted=True), ExitCode.INCONCLUSIVE),
    # Every selected case skipped: never a pass.
    (outcome(skipped={FEATURE_SKIP: 15}), ExitCode.NOTHING_QUALIFIED),
    (outcome(), ExitCode.NOTHING_QUALIFIED),
    # Cases that passed without ever reaching a board prove nothing about it.
    (outcome(passed=2, reached=False), ExitCode.INCONCLUSIVE),
])
def test_exit_codes(run, code):
    assert verdict.exit_code(run) is code


def test_exit_codes_are_distinct_and_documented():
    assert len({int(c) for c in ExitCode}) == len(ExitCode) == len(verdict.VERDICTS)
    text = (Path(verdict.__file__).parents[1] / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} |" in text, f"README does not document exit code {int(code)}"


def test_missing_features_are_named_with_their_case_counts():
    run = outcome(skipped={FEATURE_SKIP: 15, "unsupported feature(s): gicv3, multi-irq-vmm": 2})
    assert verdict.missing_features(run) == Counter({"multi-irq-vmm": 17, "gicv3": 2})


def test_a_bad_hil_command_line_is_a_usage_error_not_an_inconclusive_run(capsys):
    from hil import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["qualify", "--no-such-option"])
    assert e.value.code == ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
