"""`hil qualify --release` on the virtual lab: both boards at once through the coordinator,
with power from the lab's switch, consoles from ser2net and images from its TFTP server, into
one directory and one report; the switch's password appears in no output. Besides the board
cases, each board runs a case whose board kernel logs a WARN: the report must say "do not ship"
and show that failure with its kernel log line and console excerpt."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .conftest import REPO
from .test_virtual_lab import leaks_of_the_planted_secret, running_qemus

WARNING = "WARNING: CPU: 0 PID: 1 at drivers/virtio/planted.c:1 x+0x0/0x4"
PLANTED = f'''
import pytest

@pytest.mark.board
def test_the_board_kernel_warns(board):
    board.check("echo '{WARNING}' > /dev/kmsg")
'''


def test_a_release_run_qualifies_both_boards_at_once_into_one_directory_and_report(
        virtual_lab: Any, tmp_path: Path, record_property) -> None:
    # The board cases only: the whole suite on two boards is `hil qualify --release` itself.
    planted = tmp_path / "cases" / "test_planted_warning.py"
    planted.parent.mkdir()
    planted.write_text(PLANTED)
    log = open(tmp_path / "release.log", "w")  # noqa: SIM115
    r = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "qualify", "--no-build", "--release", "ci",
         "--results", str(tmp_path), "--no-campaigns", "--", "-m", "board", str(planted)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **virtual_lab.env})
    both_up = False
    while r.poll() is None:
        both_up |= set(running_qemus(virtual_lab.directory)) == {"virtual-0", "virtual-1"}
        time.sleep(0.5)
    log.close()
    out = (tmp_path / "release.log").read_text()
    assert r.returncode == 1, out[-4000:]  # the planted warning: a product failure
    assert both_up, "the two boards never ran at the same time"
    release = json.loads((tmp_path / "ci" / "release.json").read_text())
    assert release["boards"] == {"virtual-0": 1, "virtual-1": 1}
    record_property("release_two_boards_wall_s", release["wall_s"])
    for place in ("virtual-0", "virtual-1"):
        d = tmp_path / "ci" / place
        assert (d / "junit.xml").exists() and (d / "verdict.json").exists()
        results = [json.loads(ln) for ln in (d / "cases.jsonl").read_text().splitlines()]
        planted = [r for r in results if r["test"].endswith("::test_the_board_kernel_warns")]
        assert [r["result"] for r in planted] == ["product"], results
        assert "planted.c:1" in planted[0]["message"], planted
        assert sum(r["result"] == "passed" for r in results) == 3
        # Progress came as results arrived, per board, failures with their kind.
        assert f"{place}    PASS test_board.py::test_board_boots_at_el2" in out
        assert re.search(rf"{place} +FAIL .*test_the_board_kernel_warns \(product\): "
                         r".*planted\.c:1", out), out
        timings = json.loads((d / "session.json").read_text())["timings"]
        record_property(f"{place}_power_on_to_board_s", round(timings["power_on_to_board_s"], 1))
    html = (tmp_path / "ci" / "report.html").read_text()
    assert "virtual-0" in html and "virtual-1" in html
    assert re.search(r'id="overall-verdict"[^>]*>[^<]*do not ship', html), html[:3000]
    failures = re.findall(r'<div class="failure" data-failure="[^"]*test_the_board_kernel_warns"'
                          r'>(.*?)</div>', html, re.DOTALL)
    assert len(failures) == 2, html[-5000:]  # one per board
    for f in failures:
        kernel = re.search(r'<pre class="kernel-log">(.*?)</pre>', f, re.DOTALL)
        assert kernel and "planted.c:1" in kernel[1], f
        assert '<pre class="console-excerpt">' in f and "planted.c:1" in \
            f.split('<pre class="console-excerpt">', 1)[1], f
    assert (tmp_path / "ci" / "kcidb.json").exists()
    # The switch's password reached the drivers (the boards were powered) and nothing else.
    assert leaks_of_the_planted_secret(virtual_lab, tmp_path) == []
