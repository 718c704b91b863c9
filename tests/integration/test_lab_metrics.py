"""The janitor's metrics as a lab watches them: Debian's Prometheus server scrapes the janitor
beside a real labgrid coordinator and exporter on loopback, and its query API answers with the
figures `hil lab status` prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.ports import free_port
from hil.scheduling import metrics
from hil.scheduling.bench_janitor import stand_in_check
from hil.scheduling.coordinator import Coordinator
from hil.scheduling.janitor import Janitor
from hil.scheduling.loopback import LoopbackLab

PROMETHEUS = "/usr/bin/prometheus"  # Debian's, a host package of firmware/images.yaml


def until(what: str, ok: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.5)


def query(server: str, expr: str) -> float | None:
    url = f"{server}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
    except OSError:
        return None
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_janitors_figures_and_status_shows_the_same(tmp_path: Path):
    assert shutil.which(PROMETHEUS), "prometheus missing: run `hil firmware build` as root"
    with LoopbackLab(tmp_path / "lab", places=2) as lab:
        coordinator = Coordinator(lab.address, purpose="janitor", eager=True)
        lab_metrics = metrics.LabMetrics(coordinator.places, coordinator.reservations)
        port = lab_metrics.serve("127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/metrics"
        janitor = Janitor(coordinator, tmp_path / "unused.yaml", tmp_path / "health", grace=1,
                          check=stand_in_check, metrics=lab_metrics)
        threading.Thread(target=janitor.run, daemon=True).start()

        web = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - {{job_name: hil-janitor, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n")
        log = (tmp_path / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
            stdout=log, stderr=log)
        server = f"http://127.0.0.1:{web}"
        try:
            # What a lab lives through: a place taken by hand with no lease (kicked after the
            # grace, then health-checked), and a place whose health nobody knows (checked).
            with Coordinator(lab.address, purpose="by-hand") as hand:
                hand.acquire("place-1")
                hand.set_tags("place-0", {"health": "unknown"})
            until("the janitor's two health checks",
                  lambda: metrics.fetch(url).checks.get("good") == 2, 90)
            figures = metrics.fetch(url)
            assert figures.kicks == {"no-lease": 1} and figures.lease_expiries == 0
            assert figures.grants >= 2  # each check reserved its place
            assert figures.places[("good", "free")] == 2

            # Prometheus has them, through its own scrape and query API.
            until("Prometheus's first scrape with both checks",
                  lambda: query(server, 'hil_health_checks_total{outcome="good"}') == 2, 60)
            assert query(server, 'hil_kicks_total{reason="no-lease"}') == 1
            assert query(server, "hil_lease_expiries_total") == 0
            assert query(server, 'sum(hil_places{state="free",health="good"})') == 2
            assert query(server, "hil_reservations_waiting") == 0
            granted = query(server, "hil_reservation_grant_wait_seconds_count")
            assert granted is not None and granted >= 2

            status = subprocess.run(
                [sys.executable, "-m", "hil.cli", "lab", "status", "--coordinator", lab.address,
                 "--metrics", url, "--dir", str(tmp_path / "no-lab")],
                capture_output=True, text=True, timeout=60)
            assert status.returncode == 0, status.stderr
            out = status.stdout.splitlines()
            assert "  good     free 2  reserved 0  held 0" in out
            assert "  reservations waiting 0" in out
            assert "  health checks: bad 0, error 0, good 2" in out
            assert "  kicks: no-lease 1; lease expiries 0" in out
        finally:
            prometheus.terminate()
            prometheus.wait(30)
            log.close()
            janitor.close()
