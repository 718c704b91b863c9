"""The scheduler bench's janitor, in a process of its own as in a lab (the supervisor's, or a
service beside the coordinator): what it costs is its process's CPU, gRPC's threads and the
place watch's included, and the bench's M sessions in one process cannot blur it.

    python -m hil.scheduling.bench_janitor ADDRESS HEALTH_DIR watch|own-stream

It prints one JSON line when it runs ({"watch": URL or null}) and ends when its standard input
closes, so that a bench that is killed takes it along, printing what its place watch served
({"requests": ..., "connections": ...}).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from hil.scheduling import health
from hil.scheduling.coordinator import Coordinator
from hil.scheduling.janitor import Janitor
from hil.scheduling.reservations import PlaceReservation


def stand_in_check(address: str, place: str, env_file: Path, results: Path) -> None:
    """A health check that costs what scheduling costs and nothing else."""
    with PlaceReservation(address, {"name": place}, prio=health.CHECK_PRIO, timeout=120,
                          lease=60, healthy_only=False, progress=lambda _: None,
                          purpose=f"health-{place}") as _:
        time.sleep(0.2)
        with Coordinator(address, purpose="health-mark") as c:
            health.mark(c, place, "good", "stand-in check")


def main(address: str, health_dir: Path, watch: bool) -> int:
    janitor = Janitor(Coordinator(address, purpose="janitor", eager=True), Path("unused.yaml"), health_dir,
                      interval=1e9, out=lambda _: None, check=stand_in_check,
                      watch_address=None if watch else "")
    thread = threading.Thread(target=janitor.run, name="janitor", daemon=True)
    thread.start()
    print(json.dumps({"watch": janitor.watch.url if janitor.watch else None}), flush=True)
    sys.stdin.read()
    janitor.stop.set()
    thread.join(10)
    server = janitor.watch
    updates = dict(janitor.coordinator.updates)
    janitor.close()
    print(json.dumps({"requests": server.requests if server else 0,
                      "connections": server.connections_opened if server else 0,
                      "place updates": updates["place"],
                      "resource updates": updates["resource"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "watch"))
