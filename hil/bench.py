"""Benchmarks of the lab: fixed costs (firmware cache hit, board and guest shells) and the
whole qualification suite (wall time, boots). They print figures and assert nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hil.firmware import images
from hil.firmware.cache import default_images


def _fmt(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):6.2f} s  min {min(xs):6.2f}  max {max(xs):6.2f}"
            f"  (n={len(xs)})")


def boots(env_path: Path, runs: int = 3) -> int:
    os.environ.setdefault("HIL_IMAGES", str(default_images()))
    from labgrid import Environment

    import hil.labgrid  # noqa: F401  (registers the drivers)

    images.build(log=lambda _m: None)  # warm the cache first: the hits below are what we time
    hits = []
    for _ in range(runs):
        t0 = time.monotonic()
        images.build(log=lambda _m: None)
        hits.append(time.monotonic() - t0)

    env = Environment(str(env_path))
    target = env.get_target("main")
    strategy = target.get_driver("BoardGuestStrategy")
    board, guest = [], []
    for _ in range(runs):
        strategy.transition("off")
        t0 = time.monotonic()
        strategy.transition("board")
        t1 = time.monotonic()
        strategy.transition("guest")
        t2 = time.monotonic()
        strategy.shell("guest").check("true")
        board.append(t1 - t0)
        guest.append(t2 - t1)
    strategy.transition("off")
    print(f"firmware build, cache hit:        {_fmt(hits)}")
    print(f"board shell after power-on:       {_fmt(board)}")
    print(f"guest shell after board shell:    {_fmt(guest)}")
    return 0


def suite(env_path: Path) -> int:
    """Run `hil qualify` once and print its wall time and how many boots it needed."""
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as tmp:
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "hil.cli", "qualify", "--lg-env", str(env_path),
                            "--results", tmp, "--", "-q"], capture_output=True, text=True)
        wall = time.monotonic() - t0
        session = json.loads((Path(tmp) / "session.json").read_text())
        summary = [ln for ln in p.stdout.splitlines() if " passed" in ln or " failed" in ln]
    print(f"qualification suite: {wall:.0f} s wall ({session['wall_s']:.0f} s in the lab), "
          f"{session['boots']['board']} board boots, {session['boots']['guest']} guest boots")
    print(f"pytest: {summary[-1] if summary else p.stdout[-300:]}")
    return 0


def _vcpus(n: int) -> str:
    return f"{n} vCPU{'s' if n > 1 else ''}"


def wiring(env_path: Path, sessions: int, results: Path | None,
           pytest_args: Sequence[str] = ()) -> int:
    """Run the wiring benchmark (testcases/test_wiring_cost.py) in `sessions` separate
    sessions (each powers the board on afresh) and print its tables, the ratios of each
    session and how the sessions agree. `pytest_args` choose the board (e.g. `--hil-reserve
    name=rpi4` with places/boards.yaml)."""
    from hil.measure import wiringbench

    base = results or Path("results") / time.strftime("bench-wiring-%Y%m%d-%H%M%S")
    repo = Path(__file__).resolve().parent.parent
    data, code = [], 0
    for n in range(1, sessions + 1):
        directory = base / f"session-{n}"
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            "--lg-env", str(env_path), "--hil-bench", "--hil-results",
                            str(directory), *pytest_args,
                            str(repo / "testcases" / "test_wiring_cost.py")],
                           capture_output=True, text=True)
        wall = time.monotonic() - t0
        path = directory / "measurements.jsonl"
        rows = [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []
        if p.returncode:
            code = code or p.returncode
            print(p.stdout[-2000:], p.stderr[-1000:], sep="\n")
        clocks = wiringbench.clocks(rows)
        print(f"session {n}: {wall:.0f} s, exit {p.returncode}, clock {', '.join(clocks) or '?'}, "
              f"results {directory}")
        if not rows:
            continue
        by_size = {size: wiringbench.samples(rows, size) for size in wiringbench.sizes(rows)}
        data.append(by_size)
        for size, samples in by_size.items():
            print(f"{_vcpus(size)}, as many queue pairs (and virtio-blk queues):")
            for columns in (wiringbench.RR_COLUMNS, wiringbench.MQ_COLUMNS):
                text = wiringbench.table(samples, columns)
                if text:
                    print(text)
            print("ratios side by side (median of per-iteration ratios [range], iterations "
                  "ahead):")
            print("\n".join(wiringbench.ratio_lines(samples)))
            spread = wiringbench.interrupts_per_cpu(rows, size)
            if spread:
                print("queue interrupts per guest CPU (median share of each CPU):")
                print(spread)
            print("where the cost goes, per transaction (exits by reason; VMM CPU us by "
                  "thread):")
            print(wiringbench.where_cost_goes(rows, size))
        gate = [r["value"] for r in rows if r["name"] == "bench.gate"]
        print(f"thresholds: {gate[0] if gate else 'not evaluated'}\n")
    if len(data) > 1:
        for size in sorted({size for by_size in data for size in by_size}):
            print(f"{_vcpus(size)}, across sessions:")
            print(wiringbench.across_sessions([d[size] for d in data if size in d]))
    return code
