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
from pathlib import Path

from hil.build import images
from hil.build.cache import default_images


def _fmt(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):6.2f} s  min {min(xs):6.2f}  max {max(xs):6.2f}"
            f"  (n={len(xs)})")


def boots(env_path: Path, runs: int = 3) -> int:
    os.environ.setdefault("HIL_IMAGES", str(default_images()))
    from labgrid import Environment

    import hil.lab  # noqa: F401  (registers the drivers)

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
