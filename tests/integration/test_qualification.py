"""The README's qualification command, end to end on the virtual lab: the suite in two halves,
on two virtual boards at once.

Why two: the nested guest's console costs about a millisecond a character (each one a trap to
the board's KVM and its VMM), which keeps one host core busy and leaves the other mostly idle;
a second board uses it. One run took 552 s in CI; the two halves side by side, 404 s
(2026-12-06). Each case still runs once, through `hil qualify` on a board of its own, and the
halves together are checked to be the whole suite.
"""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from hil.ports import free_port

from .conftest import REPO, VIRTUAL

# The guest's console port of places/virtual.yaml: the second board gets another one.
CONSOLE_PORT = "45871"
# The first half: most of the layout and fallback cases, and the migration (~360 s each).
FIRST_HALF = "(test_multi_irq and not combination) or test_migration"
HALVES = (FIRST_HALF, f"not ({FIRST_HALF})")


def half_env(tmp_path: Path, n: int) -> Path:
    """The README's board, measured once per wiring for one second instead of three times
    three: every case and every wiring check still runs (the repetitions only steady the
    medians `hil bench` and a board's thresholds read). The second board's guest console
    listens on a free port."""
    text = VIRTUAL.read_text()
    assert text.count(CONSOLE_PORT) == 3  # the port resource, the driver's check, the chardev
    if n:
        text = text.replace(CONSOLE_PORT, str(free_port()))
    env = yaml.safe_load(text)
    env["targets"]["main"]["options"].update(throughput_iterations=1, throughput_seconds=1)
    path = tmp_path / f"virtual-{n}.yaml"
    path.write_text(yaml.safe_dump(env, sort_keys=False))
    return path


def suite(env_file: Path, tmp_path: Path) -> set[str]:
    """The cases a whole qualification selects (campaigns and benchmarks left out)."""
    p = subprocess.run([sys.executable, "-m", "pytest", "testcases", "--collect-only", "-q",
                        "-p", "no:cacheprovider", "--lg-env", str(env_file),
                        "--hil-results", str(tmp_path / "collect")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {line.strip() for line in p.stdout.splitlines() if "::" in line}


def check_half(results: Path) -> set[str]:
    """What every qualification run must have written; returns the cases it ran (the node
    ids the run recorded in cases.jsonl)."""
    suite_xml = ET.parse(results / "junit.xml").getroot().find("testsuite")
    assert int(suite_xml.get("tests")) >= 7
    assert int(suite_xml.get("failures")) == 0 and int(suite_xml.get("errors")) == 0
    assert int(suite_xml.get("skipped")) == 0
    assert json.loads((results / "verdict.json").read_text())["exit_code"] == 0
    props = {p.get("name") for p in suite_xml.find("properties").iter("property")}
    assert {"hil.commit", "firmware.guest_kernel.sha256", "firmware.patched_vmm.sha256",
            "firmware.stock_vmm.sha256", "image.board-kernel.sha256"} <= props
    # Every console is kept on disk.
    logs = {p.name for p in (results / "console").iterdir()}
    assert {"console_main_board-console", "console_main_guest-serial"} <= logs
    assert "hil: guest ready" in (results / "console" / "console_main_guest-serial").read_text()
    # Each look at a kernel log ran the images' program: the whole look, typed in, costs the
    # guest's console about a second.
    for log in ("console_main_board-console", "console_main_guest-serial"):
        text = (results / "console" / log).read_text(errors="replace")
        assert "hil-kmsg-mark " in text and '"<7>hil-kmsg-mark' not in text, log
    return {json.loads(line)["test"]
            for line in (results / "cases.jsonl").read_text().splitlines()}


def test_hil_qualify_runs_the_testcases_on_the_virtual_lab_and_writes_junit(built_images,
                                                                            tmp_path):
    envs = [half_env(tmp_path, n) for n in range(len(HALVES))]
    runs = [subprocess.Popen([sys.executable, "-m", "hil.cli", "qualify", "--lg-env", str(env),
                              "--results", str(tmp_path / f"results-{n}"), "--", "-k", half],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
            for n, (env, half) in enumerate(zip(envs, HALVES, strict=True))]
    try:
        outputs = [r.communicate(timeout=900)[0] for r in runs]
    finally:
        for r in runs:
            if r.poll() is None:
                r.kill()
                r.wait()
    for r, out in zip(runs, outputs, strict=True):
        assert r.returncode == 0, out[-3000:]
    ran = [check_half(tmp_path / f"results-{n}") for n in range(len(HALVES))]
    # Together, the whole suite, each case once.
    assert not ran[0] & ran[1]
    assert ran[0] | ran[1] == suite(envs[0], tmp_path)
    rows = [json.loads(line) for n in range(len(HALVES)) for line in
            (tmp_path / f"results-{n}" / "measurements.jsonl").read_text().splitlines()]
    bps = [r["value"] for r in rows if r["name"] == "iperf3.received_bps"]
    assert bps and bps[0] > 0
    # Each wiring the board has, measured and checked.
    wired = {r.get("config") for r in rows if r["name"] == "throughput.wiring"}
    assert {"virtio-net", "vhost-net", "vhost-net-irqfd", "virtio-net-pci-msi"} <= wired
