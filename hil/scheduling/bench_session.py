"""One of the scheduler bench's hil sessions in a process of its own, as a pytest run is:
inside the bench's one process, gRPC hands every event of every session's client through one
poller and one event loop, so per-client figures there do not separate the sessions.

    python -m hil.scheduling.bench_session ADDRESS STOP_AT SEED

STOP_AT is a time.monotonic() (one clock for every process of the machine). It prints one
JSON line: its holds and what the process spent, in all and while holding.
"""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import asdict

from hil.scheduling.bench import Workload


def main(address: str, stop_at: float, seed: int) -> int:
    run = Workload(address, 1, 0.0, seed)
    run.stop_at = stop_at
    run.hil_session(0)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"holds": [asdict(h) for h in run.holds], "failures": run.failures,
                      "process_cpu": ru.ru_utime + ru.ru_stime, "holding_cpu": run.watch_cpu,
                      "watch_thread_cpu": run.watch_thread_cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
