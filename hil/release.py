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

import contextlib
import getpass
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from labgrid.util import Timeout

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


def board_user(release: str, place: str, environ: Mapping[str, str] = os.environ) -> str:
    """The user part of every holder name a board's session takes (hil.scheduling.coordinator.
    identity appends its own +pytest-PID-random), so that the release can find what a
    session it had to kill still holds."""
    user = environ.get("LG_USERNAME") or getpass.getuser()
    return f"{user}+release.{release}.{place}"


def pytest_command(place: str, directory: Path, env_file: Path, pytest_args: Sequence[str],
                   campaigns: bool) -> list[str]:
    return [sys.executable, "-m", "pytest", str(REPO / "testcases"), "-p", "no:cacheprovider",
            "--lg-env", str(env_file), "--hil-results", str(directory),
            *(["--hil-campaigns"] if campaigns else []), *pytest_args,
            "--hil-reserve", f"name={place}"]


def run(name: str, places: Sequence[str], results_root: Path, env_file: Path,
        pytest_args: Sequence[str], campaigns: bool = True,
        out: Callable[[str], None] = print,
        command: Callable[[str, Path], list[str]] | None = None) -> tuple[ExitCode, Path]:
    """`command(place, directory)`: a board's session (default: pytest on the testcases)."""
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
        cmd = (command(place, d) if command is not None
               else pytest_command(place, d, env_file, pytest_args, campaigns))
        env = {**os.environ, "LG_USERNAME": board_user(name, place)}
        boards.append(BoardRun(place, d, subprocess.Popen(cmd, cwd=REPO, stdout=log,
                                                          stderr=subprocess.STDOUT, env=env),
                               log))
    out(f"release {name}: {len(boards)} boards ({', '.join(places)}), results {directory}")
    try:
        while any(b.process.poll() is None for b in boards):
            time.sleep(0.5)
            for b in boards:
                for ev in b.new_events():
                    out(progress_line(b.place, ev, time.monotonic() - t0))
    except KeyboardInterrupt:
        stop_boards(name, boards, out)
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


# An interrupted release is over within this: each board's session gets SIGTERM (it releases
# its place and keeps its results), and SIGKILL after TERM_GRACE_S.
TERM_GRACE_S = 10.0


def stop_boards(name: str, boards: Sequence[BoardRun], out: Callable[[str], None],
                grace: float = TERM_GRACE_S) -> dict[str, str]:
    """Stop every board's session: SIGTERM, then SIGKILL after `grace`; then free what a
    killed one still holds. Returns place -> how it stopped, and says so."""
    how: dict[str, str] = {}
    for b in boards:
        if b.process.poll() is None:
            b.process.terminate()
            how[b.place] = "SIGTERM"
        else:
            how[b.place] = f"had ended (exit {b.process.returncode})"
    deadline = Timeout(float(grace))
    for b in boards:
        with contextlib.suppress(subprocess.TimeoutExpired):
            b.process.wait(max(0.0, deadline.remaining))
    killed = []
    for b in boards:
        if b.process.poll() is None:
            b.process.kill()
            b.process.wait()
            how[b.place] = "SIGKILL"
            killed.append(b.place)
        elif how[b.place] == "SIGTERM":
            how[b.place] = f"SIGTERM (exit {b.process.returncode})"
    if killed:
        for place, what in release_leftovers(name, killed).items():
            how[place] += f", {what}"
    out(f"release {name}: interrupted; stopped " + ", ".join(f"{p}: {h}" for p, h in how.items()))
    return how


def release_leftovers(name: str, places: Sequence[str]) -> dict[str, str]:
    """Free the places, locks and reservations that killed board sessions still hold (their
    holder names start with the release's board user); place -> what was done."""
    address = os.environ.get("LG_COORDINATOR")
    if not address:
        return {}
    from hil.scheduling.coordinator import Coordinator, split_identity
    from hil.scheduling.reservations import HOLDER_TAG, LEASE_TAG

    done: dict[str, str] = {}
    try:
        with Coordinator(address, purpose=f"release-{name}", connect_timeout=3.0) as c:
            host = split_identity(c.name)[0]
            owners = {place: f"{host}/{board_user(name, place)}+" for place in places}
            by_name = {p.name: p for p in c.places()}
            for place, owner in owners.items():
                p = by_name.get(place)
                if p is not None and (p.acquired or "").startswith(owner):
                    c.set_tags(place, {LEASE_TAG: "", HOLDER_TAG: ""})
                    c.release(place, only_from=p.acquired)
                    done[place] = "its place released"
            for r in c.reservations():
                for place, owner in owners.items():
                    if r.owner.startswith(owner):
                        c.cancel(r.token)
                        done[place] = done.get(place, "nothing held") + ", reservation cancelled"
    except Exception as e:  # the lab's janitor frees them when their leases run out
        return {place: f"not released ({e}): the janitor frees it after its lease"
                for place in places}
    return done


def lab_places(coordinator: str, filters: dict[str, str]) -> list[str]:
    """Healthy places matching `filters` (tags, or name=...)."""
    from hil.scheduling.coordinator import Coordinator

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
