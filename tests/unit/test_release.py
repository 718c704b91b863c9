"""A release run's verdict over its boards, and the progress lines it prints."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.release import BoardRun, board_user, progress_line, stop_boards
from hil.verdict import ExitCode as E
from hil.verdict import release_exit_code

P, F, I, U, N = E.PASSED, E.PRODUCT_FAILURE, E.INCONCLUSIVE, E.USAGE_ERROR, E.NOTHING_QUALIFIED  # noqa: E741
KILLED, PYTEST_INTERNAL = -9, 3  # not verdicts: a session killed by a signal, pytest's own error

# Every pair of board codes: row = first board, column = second board.
COLUMNS = (P, F, I, U, N, KILLED, PYTEST_INTERNAL)
TABLE = {
    P:               (P, F, I, U, N, I, I),
    F:               (F, F, F, F, F, F, F),
    I:               (I, F, I, U, I, I, I),
    U:               (U, F, U, U, U, U, U),
    N:               (N, F, I, U, N, I, I),
    KILLED:          (I, F, I, U, I, I, I),
    PYTEST_INTERNAL: (I, F, I, U, I, I, I),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(COLUMNS, COLUMNS)))
def test_every_pair_of_boards_gets_the_tables_verdict(a, b) -> None:
    want = TABLE[a][COLUMNS.index(b)]
    assert release_exit_code([a, b]) == want
    assert release_exit_code([b, a]) == want  # the order of the boards does not matter


@pytest.mark.parametrize(("codes", "want"), [
    ([], I),        # no board reached
    ([P], P), ([F], F), ([I], I), ([U], U), ([N], N), ([KILLED], I),
    ([P, P, N], N),  # one board that qualified nothing keeps the release from shipping
    ([P, N, I], I), ([N, U, I], U), ([P, I, U, F], F),
])
def test_any_number_of_boards(codes, want) -> None:
    assert release_exit_code(codes) == want


def test_progress_names_board_case_and_failures_as_they_happen() -> None:
    ok = progress_line("virtual-0", {"test": "testcases/test_board.py::test_x", "result": "passed"},
                       75.0)
    assert ok == "[01:15] virtual-0    PASS test_board.py::test_x"
    bad = progress_line("virtual-1", {"test": "t.py::y", "result": "product",
                                      "message": "AssertionError: mode"}, 3.0)
    assert bad == "[00:03] virtual-1    FAIL t.py::y (product): AssertionError: mode"
    assert progress_line("b", {"test": "t.py::z", "result": "passed"}, 119.7).startswith("[01:59]")


def _board(tmp_path: Path, place: str, script: str) -> BoardRun:
    log = open(tmp_path / f"{place}.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=log)
    return BoardRun(place, tmp_path / place, proc, log)


def test_an_interrupted_release_stops_every_board_within_15_s_and_says_how(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    polite = _board(tmp_path, "virtual-0", "import time; time.sleep(60)")
    stubborn = _board(tmp_path, "virtual-1", "import signal, time\n"
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n"
                      "time.sleep(60)")
    done = _board(tmp_path, "virtual-2", "pass")
    done.process.wait()
    deadline = time.monotonic() + 10
    while b"up" not in (tmp_path / "virtual-1.log").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    said: list[str] = []
    t0 = time.monotonic()
    how = stop_boards("r1", [polite, stubborn, done], said.append, grace=3.0)
    assert time.monotonic() - t0 < 15
    assert how["virtual-0"].startswith("SIGTERM (exit -15)")
    assert how["virtual-1"] == "SIGKILL"
    assert how["virtual-2"] == "had ended (exit 0)"
    assert all(b.process.poll() is not None for b in (polite, stubborn, done))
    assert said == ["release r1: interrupted; stopped virtual-0: SIGTERM (exit -15), "
                    "virtual-1: SIGKILL, virtual-2: had ended (exit 0)"]
    for b in (polite, stubborn, done):
        b.log.close()


def test_each_boards_holder_names_its_release_and_place() -> None:
    assert board_user("r1", "virtual-0", {"LG_USERNAME": "ci"}) == "ci+release.r1.virtual-0"
