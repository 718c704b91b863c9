"""A release qualification: the testcases on several boards at once, one results directory,
one verdict, one report.

    hil qualify --release NAME [--boards virtual-0 virtual-1 | --reserve TAG=VALUE ...]

Each board is one pytest session (`--hil-reserve name=PLACE --hil-campaigns`) writing its
own run directory under results/<NAME>/<PLACE>/, so a board's failure or loss never touches
another's results. The terminal shows every case of every board as its result arrives (from
each run's cases.jsonl). The verdict is the worst board's; `hil report` rebuilds the report
from the directory alone. Without --boards and without a coordinator (LG_COORDINATOR), the
virtual lab is started for the run and stopped after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hil.errors import ConfigError
from hil.verdict import ExitCode, release_exit_code

REPO = Path(__file__).resolve().parents[1]
LAB_ENV = REPO / "places" / "virtual-lab.yaml"


def progress_line(board: str, event: dict[str, Any], elapsed: float) -> str:
    result = str(event.get("result", "?"))
    mark = {"passed": "PASS"}.get(result, "SKIP" if result.startswith("skipped") else "FAIL")
    name = str(event.get("test", "")).rsplit("/", 1)[-1]
    seconds = int(elapsed)  # 119.7 s is [01:59], never [01:60]
    line = f"[{seconds // 60:02d}:{seconds % 60:02d}] {board:<12} {mark} {name}"
    if mark == "FAIL":
        line += f" ({result}): {event.get('message', '')}"
    return line


@dataclass
class BoardRun:
    place: str
    directory: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def new_events(self) -> list[dict[str, Any]]:
        path = self.directory / "cases.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(errors="replace").splitlines()
        complete = lines if path.read_bytes().endswith(b"\n") else lines[:-1]
        out = []
        for raw in complete[self.seen:]:
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        self.seen = len(complete)
        return out


def run(name: str, places: Sequence[str], results_root: Path, env_file: Path,
        pytest_args: Sequence[str], campaigns: bool = True,
        out: Callable[[str], None] = print) -> tuple[ExitCode, Path]:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--release NAME must be a plain name, got {name!r}")
    directory = results_root / name
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} exists and is not empty: give another release name "
                          "or remove it")
    directory.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    boards = []
    for place in places:
        d = directory / place
        log = open(directory / f"{place}.log", "wb")  # noqa: SIM115 (closed at the end)
        cmd = [sys.executable, "-m", "pytest", str(REPO / "testcases"), "-p", "no:cacheprovider",
               "--lg-env", str(env_file), "--hil-results", str(d),
               *(["--hil-campaigns"] if campaigns else []), *pytest_args,
               "--hil-reserve", f"name={place}"]
        boards.append(BoardRun(place, d, subprocess.Popen(cmd, cwd=REPO, stdout=log,
                                                          stderr=subprocess.STDOUT), log))
    out(f"release {name}: {len(boards)} boards ({', '.join(places)}), results {directory}")
    try:
        while any(b.process.poll() is None for b in boards):
            time.sleep(1)
            for b in boards:
                for ev in b.new_events():
                    out(progress_line(b.place, ev, time.monotonic() - t0))
    except KeyboardInterrupt:
        for b in boards:
            b.process.terminate()  # each session releases its place and keeps its results
        for b in boards:
            b.process.wait(120)
        raise
    finally:
        for b in boards:
            b.log.close()
    for b in boards:
        for ev in b.new_events():
            out(progress_line(b.place, ev, time.monotonic() - t0))
    codes = {b.place: int(b.process.returncode) for b in boards}
    overall = release_exit_code(codes.values())
    wall = time.monotonic() - t0
    (directory / "release.json").write_text(json.dumps({
        "release": name, "boards": codes, "exit_code": int(overall), "wall_s": round(wall, 1),
    }, indent=2) + "\n")
    for place, code in codes.items():
        out(f"release {name}: {place}: exit {code} (log {directory / (place + '.log')})")
    out(f"release {name}: exit {int(overall)} in {wall:.0f} s")
    return overall, directory


def lab_places(coordinator: str, filters: dict[str, str]) -> list[str]:
    """Healthy places matching `filters` (tags, or name=...)."""
    from hil.lab.coordinator import Coordinator

    want = {**filters}
    name = want.pop("name", None)
    found = []
    with Coordinator(coordinator, purpose="release") as c:
        places = c.places()
    for p in places:
        if name is not None and p.name != name:
            continue
        if all(p.tags.get(k) == v for k, v in want.items()):
            found.append(p.name)
    return found


def environ_for_lab(state: Any) -> dict[str, str]:
    return {**os.environ, **state.exports()}
