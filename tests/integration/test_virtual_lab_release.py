"""`hil qualify --release` on the virtual lab: both boards at once, one directory, one report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import REPO


def test_a_release_run_qualifies_both_boards_at_once_into_one_directory_and_report(
        virtual_lab: Any, tmp_path: Path, record_property) -> None:
    # The board cases only: the whole suite on two boards is `hil qualify --release` itself.
    r = subprocess.run(
        [sys.executable, "-m", "hil.cli", "qualify", "--no-build", "--release", "ci",
         "--results", str(tmp_path), "--no-campaigns", "--", "-m", "board"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, **virtual_lab.env})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    release = json.loads((tmp_path / "ci" / "release.json").read_text())
    assert release["boards"] == {"virtual-0": 0, "virtual-1": 0}
    record_property("release_two_boards_wall_s", release["wall_s"])
    for place in ("virtual-0", "virtual-1"):
        d = tmp_path / "ci" / place
        assert (d / "junit.xml").exists() and (d / "verdict.json").exists()
        assert len((d / "cases.jsonl").read_text().splitlines()) == 3
        # Progress came as results arrived, per board.
        assert f"{place}    PASS test_board.py::test_board_boots_at_el2" in r.stdout
    html = (tmp_path / "ci" / "report.html").read_text()
    assert "virtual-0" in html and "virtual-1" in html
    assert (tmp_path / "ci" / "kcidb.json").exists()
