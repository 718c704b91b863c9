"""A release run's verdict over its boards, and the progress lines it prints."""

from __future__ import annotations

import pytest

from hil.release import combine, progress_line
from hil.verdict import ExitCode as E


@pytest.mark.parametrize(("codes", "overall"), [
    ([0, 0], E.PASSED),
    ([0, 1], E.PRODUCT_FAILURE),
    ([2, 1], E.PRODUCT_FAILURE),   # a product failure on one board decides, whatever the other
    ([0, 2], E.INCONCLUSIVE),
    ([0, 5], E.PASSED),            # one board qualified everything selected, one had nothing
    ([5, 5], E.NOTHING_QUALIFIED),
    ([0, -9], E.INCONCLUSIVE),     # a session killed by a signal proves nothing
    ([], E.NOTHING_QUALIFIED),
])
def test_the_worst_board_decides(codes, overall) -> None:
    assert combine(codes) == overall


def test_progress_names_board_case_and_failures_as_they_happen() -> None:
    ok = progress_line("virtual-0", {"test": "testcases/test_board.py::test_x", "result": "passed"},
                       75.0)
    assert ok == "[01:15] virtual-0    PASS test_board.py::test_x"
    bad = progress_line("virtual-1", {"test": "t.py::y", "result": "product",
                                      "message": "AssertionError: mode"}, 3.0)
    assert bad == "[00:03] virtual-1    FAIL t.py::y (product): AssertionError: mode"
    assert progress_line("b", {"test": "t.py::z", "result": "passed"}, 119.7).startswith("[01:59]")
