"""The debug-kernel campaign once, with few cycles and two of its six mode cells: its full
length (every cell, 50 unbind/bind, 20 pm_test cycles) belongs to `hil qualify --release`."""

import json

from .conftest import VIRTUAL, run_pytest


def test_debug_kernel_campaign_runs_clean_on_the_virtual_lab(built_images, tmp_path):
    results = tmp_path / "r"
    p = run_pytest(VIRTUAL, results, "testcases/test_debug_kernel.py", "--hil-campaigns",
                   "--unbind-cycles", "3", "--pm-test-cycles", "2",
                   # The cells where the most lines are requested and freed: per-vq with two
                   # queue pairs, and per-vq refused for too few lines, falling back to shared.
                   "-k", "lines-5-pairs-2 or lines-4-pairs-2 or unbinding or suspend",
                   timeout=1500)
    assert p.returncode == 0, p.stdout[-5000:]
    verdict = json.loads((results / "verdict.json").read_text())
    assert verdict["passed"] == 4, verdict
    rows = [json.loads(line) for line in (results / "measurements.jsonl").read_text().splitlines()]
    assert [r["value"] for r in rows if r["name"] == "kmemleak.suspected_leaks"] == [0] * 4
