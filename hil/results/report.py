"""`hil report`: everything a results directory says, rebuilt from the directory alone.

The I/O around the pure parts: load the run (hil.results.load), decide each board's verdict
(verdicts), take the figures (figures), compare with a baseline (compare), locate each product
failure in the consoles (console), then write the HTML page (html) and the KCIDB document
(kcidb).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from hil.results import compare, console, figures, html, junit, kcidb, load, verdicts
from hil.results.junit import Case
from hil.verdict import ExitCode, release_exit_code

HTML = "report.html"
KCIDB = "kcidb.json"


@dataclass(frozen=True)
class Failure:
    nodeid: str
    kind: str
    message: str
    kernel: tuple[str, ...]
    excerpts: tuple[console.Excerpt, ...]
    note: str = ""


@dataclass
class BoardReport:
    run: load.BoardRun
    cases: dict[str, Case]
    verdict: verdicts.BoardVerdict
    failures: list[Failure]
    matrix: list[figures.MatrixRow]
    affinity: dict[str, list[figures.PerCpu]]
    samples: dict[str, list[float]]
    irqfd: list[figures.IrqPath]
    gate: figures.Gate
    baseline: compare.Comparison | None = None
    baseline_name: str | None = None

    @property
    def name(self) -> str:
        return self.run.name


@dataclass
class Report:
    results: load.Results
    boards: list[BoardReport]
    overall: ExitCode
    baseline: load.Results | None = None
    problems: list[str] = field(default_factory=list)
    start_time: str | None = None
    generated: str = ""


def _excerpts(case: Case, kernel: list[str], run: load.BoardRun) -> tuple[list[console.Excerpt], str]:
    offsets = [v for k, v in case.properties if k == console.OFFSETS_PROPERTY]
    found: list[console.Excerpt] = []
    if offsets:
        try:
            ranges = json.loads(offsets[-1])
        except ValueError:
            ranges = {}
        for name, (start, end) in sorted(ranges.items()):
            path = run.consoles.get(name)
            if path is not None and end > start:
                found.append(console.tail(name, path.read_bytes(), int(start), int(end)))
        if found:
            return found, ""
    anchors = console.anchors(case.message + "\n" + case.text, kernel)
    if not run.consoles:
        return [], "no console log in the results directory"
    for name, path in run.consoles.items():
        ex = console.locate(name, path.read_text(errors="replace"), anchors)
        if ex is not None:
            found.append(ex)
    if not found:
        return [], ("no console line matches the failure's message; the consoles are "
                    f"{', '.join(f'console/{p.name}' for p in run.consoles.values())}")
    return found, ""


def _board(run: load.BoardRun) -> BoardReport:
    cases = junit.merge_outcomes(run.suite.cases) if run.suite is not None else {}
    bv = verdicts.board_verdict(list(cases.values()) if run.suite is not None else None,
                                run.verdict)
    failures = []
    for c in cases.values():
        if c.outcome != "failed" or c.kind != "product":
            continue
        kernel = console.kernel_lines(c.message, c.text, c.system_out)
        excerpts, note = _excerpts(c, kernel, run)
        if not kernel:
            # The failure itself quoted no kernel report: the lines near it in the console may.
            kernel = console.kernel_lines("\n".join(ln for ex in excerpts for ln in ex.lines))
        failures.append(Failure(c.nodeid, c.kind, c.message, tuple(kernel), tuple(excerpts), note))
    return BoardReport(
        run=run, cases=cases, verdict=bv, failures=failures,
        matrix=figures.fallback_matrix(run.rows, cases),
        affinity=figures.affinity(run.rows), samples=figures.throughput_samples(run.rows),
        irqfd=figures.irqfd(run.rows), gate=figures.thresholds(run.rows, run.options))


def _match(board: BoardReport, baseline: load.Results) -> load.BoardRun | None:
    by_name = {b.name: b for b in baseline.boards}
    if board.name in by_name:
        return by_name[board.name]
    return baseline.boards[0] if len(baseline.boards) == 1 else None


def build(directory: Path, baseline_dir: Path | None = None) -> Report:
    results = load.load(directory)
    boards = [_board(b) for b in results.boards]
    report = Report(results=results, boards=boards,
                    overall=release_exit_code(b.verdict.code for b in boards),
                    problems=list(results.problems),
                    generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if not boards:
        report.problems.append("no board's run found: inconclusive")
    report.start_time = next((b.run.suite.timestamp for b in boards
                              if b.run.suite is not None and b.run.suite.timestamp), None)
    if baseline_dir is not None:
        report.baseline = load.load(baseline_dir)
        for b in boards:
            old = _match(b, report.baseline)
            if old is None:
                report.problems.append(f"baseline has no board {b.name}: not compared")
                continue
            old_cases = junit.merge_outcomes(old.suite.cases) if old.suite else {}
            b.baseline = compare.compare(old_cases, old.rows, b.cases, b.run.rows)
            b.baseline_name = old.name
    return report


def write(report: Report, out: Path) -> tuple[Path, Path]:
    """report.html and kcidb.json (validated) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    doc = kcidb.document(report)
    kcidb.validate(doc)
    kcidb_path = out / KCIDB
    kcidb_path.write_text(json.dumps(doc, indent=1) + "\n")
    html_path = out / HTML
    html_path.write_text(html.render(report))
    return html_path, kcidb_path
