"""`hil lab bench` runs for real, briefly: labgrid's coordinator and exporter on loopback,
sessions of hil's client and of labgrid-client side by side (the full matrix, N = 10/50/200
and M = 5/20/50 for a minute each, is `hil lab bench` itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_the_scheduler_bench_prints_both_clients_with_no_double_hold_and_no_leak(
        tmp_path: Path, record_property) -> None:
    r = subprocess.run([sys.executable, "-m", "hil.cli", "lab", "bench", "--places", "4",
                        "--sessions", "3", "--seconds", "5", "--work", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.strip().startswith("client"))
    rows = [ln.split() for ln in lines[header + 1:] if ln.strip()]
    assert [row[0] for row in rows] == ["hil", "labgrid-client"], r.stdout
    for row in rows:
        client, n, m, holds, p50, _p95, p99, _idle, double, leaks = row[:10]
        assert (n, m) == ("4", "3")
        held, relayed = map(int, holds.split("/"))
        assert held > 0, r.stdout
        # hil's holders follow their place through the janitor's watch, labgrid-client's
        # keep no watch.
        assert (relayed == held) if client == "hil" else relayed == 0, r.stdout
        assert double == "0" and leaks == "0", r.stdout
        record_property(f"{client}_grant_p50_s", float(p50))
        record_property(f"{client}_grant_p99_s", float(p99))
    assert "failure:" not in r.stdout and "leak:" not in r.stdout, r.stdout
