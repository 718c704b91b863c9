"""Reading a results directory: one board's run, or a release run's several boards.

The I/O half of `hil report`: files in, plain data out; every decision is taken elsewhere on
that data. A file that is missing or damaged (an interrupted run leaves no verdict.json nor
session.json, and may leave half a line) is recorded as a problem of the run, not an error.

Layouts understood:
- one board (today's runs): junit.xml, measurements.jsonl, provenance.json, environment.yaml,
  verdict.json, session.json and console/ at the top; the board is named by the provenance
  (remote place, else target) or the environment's only target;
- one subdirectory per board, each laid out as above (`<dir>/<board>/junit.xml`);
- one JUnit file per board at the top (`junit-<board>.xml`), with `provenance-<board>.json`,
  `verdict-<board>.json`, `session-<board>.json` and `console/<board>/` where present, and the
  measurements of all boards in measurements.jsonl told apart by a `board` field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil.results import junit, measurements
from hil.results.measurements import Measurement

JUNIT = "junit.xml"
MEASUREMENTS = "measurements.jsonl"
CONSOLE = "console"


@dataclass
class BoardRun:
    name: str
    directory: Path
    suite: junit.Suite | None  # None: no JUnit file at all
    rows: list[Measurement]
    provenance: dict[str, Any] | None
    options: dict[str, Any]
    verdict: dict[str, Any] | None  # verdict.json as the plugin wrote it
    session: dict[str, Any] | None
    consoles: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class Results:
    directory: Path
    boards: list[BoardRun]
    problems: list[str] = field(default_factory=list)


def _read_text(path: Path, problems: list[str]) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        problems.append(f"{path.name}: cannot be read ({e})")
        return None


def _read_json(path: Path, problems: list[str], what: str) -> dict[str, Any] | None:
    text = _read_text(path, problems)
    if text is None:
        problems.append(f"no {path.name}: {what}")
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        problems.append(f"{path.name} is not valid JSON ({e}): {what}")
        return None
    return data if isinstance(data, dict) else None


def _environment(path: Path, problems: list[str]) -> dict[str, Any] | None:
    text = _read_text(path, problems)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problems.append(f"{path.name} is not valid YAML ({e})")
        return None
    return data if isinstance(data, dict) else None


def board_name(provenance: dict[str, Any] | None, environment: dict[str, Any] | None,
               default: str) -> str:
    """A board's name: its remote place, else its labgrid target, else the environment's only
    target, else `default`."""
    place = (provenance or {}).get("place") or {}
    if place.get("remote_place"):
        return str(place["remote_place"])
    if place.get("target"):
        return str(place["target"])
    targets = list(((environment or {}).get("targets") or {}).keys())
    return str(targets[0]) if len(targets) == 1 else default


def board_options(provenance: dict[str, Any] | None, environment: dict[str, Any] | None,
                  name: str) -> dict[str, Any]:
    if provenance and isinstance(provenance.get("board_options"), dict):
        return dict(provenance["board_options"])
    targets = (environment or {}).get("targets") or {}
    target = targets.get(name) or (next(iter(targets.values())) if len(targets) == 1 else {})
    options = (target or {}).get("options") or {}
    return dict(options) if isinstance(options, dict) else {}


def _consoles(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return {p.name.removeprefix("console_"): p for p in sorted(directory.iterdir()) if p.is_file()}


def _suite(path: Path, problems: list[str]) -> junit.Suite | None:
    text = _read_text(path, problems)
    if text is None:
        problems.append(f"no {path.name}: the run ended before pytest wrote it (interrupted?)")
        return None
    suite = junit.parse(text, path.name)
    problems += suite.problems
    return suite


def _rows(path: Path, problems: list[str]) -> list[Measurement]:
    text = _read_text(path, problems)
    if text is None:
        problems.append(f"no {path.name}: no case recorded a measurement")
        return []
    parsed = measurements.parse(text, path.name)
    problems += parsed.problems
    return parsed.rows


def _board(directory: Path, default_name: str, suffix: str = "",
           rows: list[Measurement] | None = None, console_dir: Path | None = None,
           named: bool = False) -> BoardRun:
    problems: list[str] = []
    suite = _suite(directory / f"junit{suffix}.xml", problems)
    prov_path = directory / f"provenance{suffix}.json"
    if not prov_path.exists():
        prov_path = directory / "provenance.json"
    provenance = _read_json(prov_path, problems, "what was qualified is unknown")
    environment = _environment(directory / "environment.yaml", problems)
    # A release run names each board by its file or directory; a single run by what it ran on.
    name = default_name if named else board_name(provenance, environment, default_name)
    verdict = _read_json(directory / f"verdict{suffix}.json", problems,
                         "the run did not finish (interrupted); its verdict is rebuilt here")
    session = _read_json(directory / f"session{suffix}.json", problems,
                         "wall time and boots unknown")
    if rows is None:
        rows = _rows(directory / MEASUREMENTS, problems)
    return BoardRun(name=name, directory=directory, suite=suite, rows=rows,
                    provenance=provenance, options=board_options(provenance, environment, name),
                    verdict=verdict, session=session,
                    consoles=_consoles(console_dir or directory / CONSOLE), problems=problems)


def _is_run(directory: Path) -> bool:
    return any((directory / f).exists()
               for f in (JUNIT, MEASUREMENTS, "provenance.json", "verdict.json"))


def load(directory: Path) -> Results:
    """Every board's run in `directory` (see the module's docstring for the layouts)."""
    results = Results(directory=directory, boards=[])
    per_board_junit = sorted(directory.glob("junit-*.xml"))
    if per_board_junit:
        shared: list[str] = []
        all_rows = _rows(directory / MEASUREMENTS, shared)
        results.problems += shared
        names = [p.name.removeprefix("junit-").removesuffix(".xml") for p in per_board_junit]
        for name in names:
            mine = [r for r in all_rows if r.ctx("board") in (name, None)]
            if len(names) > 1:
                mine = [r for r in all_rows if r.ctx("board") == name]
            console = directory / CONSOLE / name
            results.boards.append(_board(directory, name, f"-{name}", mine,
                                         console if console.is_dir() else None, named=True))
        return results
    subdirs = [d for d in sorted(directory.iterdir()) if d.is_dir() and d.name != CONSOLE
               and _is_run(d)] if directory.is_dir() else []
    if subdirs and not _is_run(directory):
        results.boards = [_board(d, d.name, named=True) for d in subdirs]
        return results
    if _is_run(directory):
        results.boards = [_board(directory, "board")]
    else:
        results.problems.append(f"{directory}: no junit.xml, measurements.jsonl, provenance.json "
                                "or verdict.json: not a results directory")
    return results
