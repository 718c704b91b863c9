"""The README's qualification command, end to end on the virtual lab."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import yaml

from .conftest import REPO, VIRTUAL


def test_hil_qualify_runs_the_testcases_on_the_virtual_lab_and_writes_junit(built_images, tmp_path):
    results = tmp_path / "results"
    # The README's board, measured once per wiring for one second instead of three times three:
    # every case and every wiring check still runs (the repetitions only steady the medians `hil bench` and
    # a board's thresholds read).
    env = yaml.safe_load(VIRTUAL.read_text())
    env["targets"]["main"]["options"].update(throughput_iterations=1, throughput_seconds=1)
    env_file = tmp_path / "virtual.yaml"
    env_file.write_text(yaml.safe_dump(env, sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "hil.cli", "qualify", "--lg-env", str(env_file),
                        "--results", str(results)],
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
    # Each wiring the board has, measured and checked.
    wired = {r.get("config") for r in rows if r["name"] == "throughput.wiring"}
    assert {"virtio-net", "vhost-net", "vhost-net-irqfd", "virtio-net-pci-msi"} <= wired
    # Every console is kept on disk.
    logs = {p.name for p in (results / "console").iterdir()}
    assert {"console_main_board-console", "console_main_guest-serial"} <= logs
    assert "hil: guest ready" in (results / "console" / "console_main_guest-serial").read_text()
    # Each look at a kernel log ran the images' program: the whole look, typed in, costs the
    # guest's console about a second.
    for log in ("console_main_board-console", "console_main_guest-serial"):
        text = (results / "console" / log).read_text(errors="replace")
        assert "hil-kmsg-mark " in text and '"<7>hil-kmsg-mark' not in text, log
