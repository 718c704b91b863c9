"""`hil bench --wiring` once, short: the GICv3 board (wall clock; the MSI-X wiring is measured
on the GICv2 board by every qualification), one iteration of one second per wiring. Its length
(two iterations, two sessions, the cost-model board) belongs to `hil bench`; this run proves
the path: every wiring the board has is booted, proved and measured, and the table comes
out."""

import json
import subprocess
import sys

import yaml

from hil.measure import throughput

from .conftest import REPO

GICV3 = REPO / "places" / "virtual-gicv3.yaml"


def test_hil_bench_wiring_measures_every_wiring_and_prints_one_table(built_images, tmp_path):
    env = yaml.safe_load(GICV3.read_text())
    env["targets"]["main"]["options"].update(bench_iterations=1, bench_seconds=1)
    env_file = tmp_path / "virtual.yaml"
    env_file.write_text(yaml.safe_dump(env, sort_keys=False))
    results = tmp_path / "bench"
    p = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "--wiring", "--lg-env",
                        str(env_file), "--results", str(results)],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "session 1:" in p.stdout and "clock wall" in p.stdout, p.stdout[-3000:]
    rows = [json.loads(line) for line in
            (results / "session-1" / "measurements.jsonl").read_text().splitlines()]
    runs = {r["config"]: r["value"] for r in rows if r["name"] == "cost.run"}
    # Every wiring the board has, each proved by its counters before it was measured.
    wirings = set(throughput.vmm_settings(env["targets"]["main"]["options"], throughput.WIRINGS))
    assert wirings == set(throughput.WIRINGS) - {"virtio-net-pci-msi"}
    assert set(runs) == wirings, sorted(runs)
    for name in wirings:
        assert any(line.startswith(name + " ") for line in p.stdout.splitlines()), name
    tps = {r["config"]: r["value"] for r in rows if r["name"] == "sockperf.transactions_per_s"}
    assert all(v > 0 for v in tps.values()) and set(tps) == wirings
    # What irqfd removes, counted: no injection by the VMM and no InterruptStatus/ACK exit.
    for name in ("vhost-net-irqfd", "vhost-net-irqfd-shared"):
        assert runs[name]["injections"] == 0 and runs[name]["status_ack_exits"] == 0, runs[name]
    assert runs["vhost-net"]["injections"] > 0, runs["vhost-net"]
    assert all(r["clock"] == "wall" for r in rows if r["name"] == "sockperf.transactions_per_s")
