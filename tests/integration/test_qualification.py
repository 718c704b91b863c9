"""The README's qualification command, end to end on the virtual lab."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

from .conftest import REPO


def test_hil_qualify_runs_the_testcases_on_the_virtual_lab_and_writes_junit(built_images, tmp_path):
    results = tmp_path / "results"
    p = subprocess.run([sys.executable, "-m", "hil.cli", "qualify", "--results", str(results)],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    suite = ET.parse(results / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 7
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    assert int(suite.get("skipped")) == 0
    assert json.loads((results / "verdict.json").read_text())["exit_code"] == 0
    props = {p.get("name") for p in suite.find("properties").iter("property")}
    assert {"hil.commit", "firmware.guest_kernel.sha256", "firmware.patched_vmm.sha256",
            "firmware.stock_vmm.sha256", "image.board-kernel.sha256"} <= props
    rows = [json.loads(line) for line in (results / "measurements.jsonl").read_text().splitlines()]
    bps = [r["value"] for r in rows if r["name"] == "iperf3.received_bps"]
    assert bps and bps[0] > 0
    # Every console is kept on disk.
    logs = {p.name for p in (results / "console").iterdir()}
    assert {"console_main_board-console", "console_main_guest-serial"} <= logs
    assert "hil: guest ready" in (results / "console" / "console_main_guest-serial").read_text()
