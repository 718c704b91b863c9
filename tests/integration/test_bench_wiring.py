"""`hil bench --wiring` once, short: the GICv3 board (wall clock), a guest of two vCPUs with two
queue pairs and two virtio-blk queues, one iteration of one second, two wirings: one line
(vhost-net) and a line per queue (irqfd). Its length (every wiring, three guest sizes, two
iterations, two sessions, the cost-model board) belongs to `hil bench`; the other wirings are
booted, proved and measured in every qualification (testcases/test_throughput.py). This run
proves the bench's path: each wiring is booted, proved and measured with each workload, each
queue's interrupts land where they should, and the tables come out. It is also CI's run of the
GICv3 board's irqfd path: the queue lines reach the guest on vgic-v3 with no injection by the
VMM (the board's and guest's cases on GICv3 run in a lab session, test_virtual_lab.py)."""

import json
import subprocess
import sys

import yaml

from .conftest import REPO

GICV3 = REPO / "places" / "virtual-gicv3.yaml"


def test_hil_bench_wiring_measures_every_wiring_and_prints_one_table(built_images, tmp_path):
    env = yaml.safe_load(GICV3.read_text())
    env["targets"]["main"]["options"].update(bench_iterations=1, bench_seconds=1,
                                             bench_vcpus=[2],
                                             bench_wirings=["vhost-net", "vhost-net-irqfd"],
                                             pin_vmm={"vcpus": [0, 1], "others": 1},
                                             bench_iothread="thread-pool-min=1,thread-pool-max=1")
    env_file = tmp_path / "virtual.yaml"
    env_file.write_text(yaml.safe_dump(env, sort_keys=False))
    results = tmp_path / "bench"
    p = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "--wiring", "--lg-env",
                        str(env_file), "--results", str(results)],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "session 1:" in p.stdout and "clock wall" in p.stdout, p.stdout[-3000:]
    assert "2 vCPUs, as many queue pairs" in p.stdout, p.stdout[-3000:]
    rows = [json.loads(line) for line in
            (results / "session-1" / "measurements.jsonl").read_text().splitlines()]
    runs = {r["config"]: r["value"] for r in rows if r["name"] == "cost.run"}
    # Each wiring asked for, each proved by its counters before it was measured.
    wirings = {"vhost-net", "vhost-net-irqfd"}
    assert set(runs) == wirings, sorted(runs)
    for name in wirings:
        assert any(line.startswith(name + " ") for line in p.stdout.splitlines()), name
    tps = {r["config"]: r["value"] for r in rows if r["name"] == "sockperf.transactions_per_s"}
    assert all(v > 0 for v in tps.values()) and set(tps) == wirings
    # What irqfd removes, counted: no injection by the VMM and no InterruptStatus/ACK exit.
    irqfd = runs["vhost-net-irqfd"]
    assert irqfd["injections"] == 0 and irqfd["status_ack_exits"] == 0, irqfd
    assert runs["vhost-net"]["injections"] > 0, runs["vhost-net"]
    assert all(r["clock"] == "wall" for r in rows if r["name"] == "sockperf.transactions_per_s")
    assert all(r["vcpus"] == 2 for r in rows if r["name"] == "sockperf.transactions_per_s")
    # One request/response flow from each guest CPU, both measured, on both CPUs' queues.
    flows = {r["config"]: r["value"] for r in rows if r["name"] == "sockperf.flows_per_s"}
    assert set(flows) == wirings and all(len(f) == 2 and min(f) > 0 for f in flows.values())
    rr_cpus = {r["config"]: r["value"] for r in rows if r["name"] == "rr.irqs_per_cpu"}
    assert all(rr_cpus["vhost-net-irqfd"]) and 0 in rr_cpus["vhost-net"], rr_cpus
    # The several-queue workloads, each proved and counted in every wiring.
    for workload in ("udp", "blk"):
        done = {r["config"]: r["value"] for r in rows if r["name"] == f"{workload}.run"}
        assert set(done) == wirings, (workload, sorted(done))
        assert all(run["transactions"] > 0 for run in done.values()), done
        per_cpu = {r["config"]: r["value"] for r in rows if r["name"] == f"{workload}.irqs_per_cpu"}
        # With a line per queue, both CPUs take their queues' interrupts (the testcase has
        # checked that each landed on its own CPU); GICv3 delivers one line to one CPU.
        assert all(per_cpu["vhost-net-irqfd"]), per_cpu
        assert 0 in per_cpu["vhost-net"], per_cpu
    blk = next(r["value"] for r in rows if r["name"] == "blk.run"
               and r["config"] == "vhost-net-irqfd")
    assert blk["injections"] == 0, blk  # the iothread's completions went by irqfd too
    assert "UDP 64 B kpackets/s" in p.stdout and "4K read IOPS" in p.stdout
    # Every thread of the VMM pinned as declared, before the workloads and after them (the I/O
    # workers QEMU started for the reads inherit their creators' CPUs).
    for name in ("bench.vmm_threads", "bench.vmm_threads_after"):
        listed = [r["value"] for r in rows if r["name"] == name]
        assert len(listed) == len(wirings), (name, listed)
        for threads in listed:
            pairs = [t.split()[1:3] for t in threads]
            vcpus = {n: c for n, c in pairs if n.startswith("CPU_")}
            others = [c for n, c in pairs if not n.startswith("CPU_")]
            assert vcpus == {"CPU_0/KVM": "0", "CPU_1/KVM": "1"}, threads
            assert others and set(others) == {"1"}, threads
    assert "queue interrupts per guest CPU" in p.stdout
