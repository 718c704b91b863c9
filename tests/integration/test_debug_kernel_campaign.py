"""The debug-kernel campaign once, short: the unbind/bind and suspend/resume loops with few
cycles, each ending in a kmemleak scan. Its full length (every mode cell, 50 unbind/bind, 20
pm_test cycles) belongs to `hil qualify --release`; the modes themselves are in every
qualification, on the patched kernel."""

import json

from .conftest import VIRTUAL, run_pytest


def test_debug_kernel_campaign_runs_clean_on_the_virtual_lab(built_images, tmp_path):
    results = tmp_path / "r"
    p = run_pytest(VIRTUAL, results, "testcases/test_debug_kernel.py", "--hil-campaigns",
                   "--unbind-cycles", "3", "--pm-test-cycles", "2",
                   # Lines requested and freed again and again, under lockdep and kmemleak.
                   "-k", "unbinding or suspend",
                   timeout=1500)
    assert p.returncode == 0, p.stdout[-5000:]
    verdict = json.loads((results / "verdict.json").read_text())
    assert verdict["passed"] == 2, verdict
    rows = [json.loads(line) for line in (results / "measurements.jsonl").read_text().splitlines()]
    assert [r["value"] for r in rows if r["name"] == "kmemleak.suspected_leaks"] == [0] * 2
