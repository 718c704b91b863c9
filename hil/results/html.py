"""The report as one self-contained HTML page: inline CSS and SVG, no script, no network.

Pure: the report's model (hil.results.report) in, the page's text out.
"""

from __future__ import annotations

import statistics
from html import escape
from typing import TYPE_CHECKING, Any

from hil.results import compare, stats, svg
from hil.verdict import ExitCode

if TYPE_CHECKING:
    from hil.results.report import BoardReport, Report

CSS = """
body{font-family:sans-serif;margin:1.5em auto;max-width:70em;color:#222;line-height:1.35}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}h3{margin-top:1.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:left;vertical-align:top}th{background:#f2f2f2}
.verdict{font-size:1.3em;font-weight:bold;padding:.5em .8em;border-radius:4px;display:inline-block}
.v0{background:#dff0d8;color:#2b5e1e}.v1{background:#f2dede;color:#8a1f1f}
.v2,.v4,.v5{background:#fcf8e3;color:#7a5b00}
.ok{color:#2b5e1e}.bad{color:#8a1f1f;font-weight:bold}.warn{color:#7a5b00}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.5em;overflow-x:auto;font-size:.85em}
.plot{display:block;margin:.6em 0;background:#fff;border:1px solid #eee}
.plot .grid{stroke:#eee}.plot .axis-line{stroke:#444}.plot text{font-size:11px;fill:#333}
.plot .plot-title{font-size:13px;font-weight:bold}.plot .range{stroke:#222;stroke-width:1.5;fill:none}
.plot .sample{fill:#222;fill-opacity:.6}
.notes li{color:#7a5b00}small{color:#666}
"""

MATRIX_CLASS = {"as documented": "ok", "differs": "bad", "not measured": "warn",
                "not in the matrix": "warn"}


def _e(v: Any) -> str:
    return escape(str(v))


def _verdict_class(code: ExitCode) -> str:
    return f"verdict v{int(code)}"


def _table(head: list[str], rows: list[list[str]], attrs: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _gbps(v: float | None) -> str:
    return "—" if v is None else f"{v / 1e9:.3f}"


def _summary(report: Report) -> str:
    rows = []
    for b in report.boards:
        c: dict[str, int] = {"passed": 0, "product": 0, "infrastructure": 0, "skipped": 0}
        for case in b.cases.values():
            key = case.kind if case.outcome == "failed" and case.kind else case.outcome
            c[key] = c.get(key, 0) + 1
        session = b.run.session or {}
        wall = f"{session['wall_s']:.0f} s" if isinstance(session.get("wall_s"), int | float) else "—"
        rows.append([
            f"<b>{_e(b.name)}</b>",
            f'<span class="{_verdict_class(b.verdict.code)}" data-board-verdict="{_e(b.name)}">'
            f"{_e(b.verdict.decision)}</span><br><small>{_e(b.verdict.text)} "
            f"(exit {int(b.verdict.code)})</small>",
            str(c["passed"]), str(c["product"]), str(c["infrastructure"]), str(c["skipped"]),
            _e(b.gate.verdict), wall,
        ])
    return _table(["board", "verdict", "passed", "product failures", "infrastructure failures",
                   "skipped", "thresholds", "wall time"], rows, 'id="boards"')


def _notes(report: Report) -> str:
    notes = list(report.problems)
    for b in report.boards:
        notes += [f"{b.name}: {n}" for n in b.verdict.notes]
        notes += [f"{b.name}: {p}" for p in b.run.problems]
    if not notes:
        return ""
    return ("<h2>What the results directory lacks</h2><ul class=\"notes\" id=\"notes\">"
            + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")


def _failures(b: BoardReport) -> str:
    out = []
    if b.failures:
        out.append("<h3>Product failures</h3>")
    for f in b.failures:
        out.append(f'<div class="failure" data-failure="{_e(f.nodeid)}">')
        out.append(f"<h4 class=\"bad\">{_e(f.nodeid)}</h4><pre>{_e(f.message)}</pre>")
        if f.kernel:
            out.append("<p>Kernel log lines:</p><pre class=\"kernel-log\">"
                       + _e("\n".join(f.kernel)) + "</pre>")
        for ex in f.excerpts:
            out.append(f"<p>Console excerpt: <code>console/console_{_e(ex.console)}</code> from "
                       f"line {ex.first_line} <small>(located by: {_e(ex.anchor[:100])})</small>"
                       f"</p><pre class=\"console-excerpt\">{_e(chr(10).join(ex.lines))}</pre>")
        if f.note:
            out.append(f"<p class=\"warn\">{_e(f.note)}</p>")
        out.append("</div>")
    infra = [c for c in b.cases.values() if c.outcome == "failed" and c.kind != "product"]
    if infra:
        out.append("<h3>Infrastructure failures (run again)</h3>")
        out.append(_table(["case", "message"],
                          [[_e(c.nodeid), f"<pre>{_e(c.message[:2000])}</pre>"] for c in infra],
                          'class="infrastructure"'))
    skipped = [c for c in b.cases.values() if c.outcome == "skipped"]
    if skipped:
        out.append("<h3>Skipped</h3>")
        out.append(_table(["case", "reason"], [[_e(c.nodeid), _e(c.message)] for c in skipped]))
    return "\n".join(out)


def _matrix(b: BoardReport) -> str:
    rows = [[_e(r.guest), _e(r.vmm), str(r.lines), str(r.pairs), _e(r.expected or "—"),
             _e(r.seen or "—"), f'<span class="{MATRIX_CLASS[r.status]}">{_e(r.status)}</span>',
             _e(r.case or "no case")] for r in b.matrix]
    return ("<h3>Fallback matrix (firmware/PROTOCOL.md section 8)</h3>"
            + _table(["guest", "VMM", "lines", "queue pairs", "mode expected", "mode seen",
                      "", "case"], rows, f'class="fallback-matrix" data-board="{_e(b.name)}"'))


def plots(b: BoardReport) -> list[str]:
    out = []
    for group, lines in sorted(b.affinity.items()):
        cpus = max(len(p.counts) for p in lines)
        groups = [p.line + (f" (bound to CPU{p.bound_to})" if p.bound_to is not None else "")
                  for p in lines]
        values = {g: {f"CPU{i}": float(n) for i, n in enumerate(p.counts)}
                  for g, p in zip(groups, lines, strict=True)}
        title = ("per-CPU interrupts of each queue line, each bound to its own CPU"
                 if group == "affinity" else
                 "per-CPU interrupts of each queue line, multiqueue virtio-net (driver's spread)")
        out.append(svg.render(svg.Bars(
            plot="affinity" if group == "affinity" else "affinity-multiqueue", title=title,
            unit="interrupts", groups=groups, series=[f"CPU{i}" for i in range(cpus)],
            values=values, digits=0)))
    if b.samples:
        out.append(svg.render(svg.Bars(
            plot="throughput", title="throughput per interrupt wiring: median, range, samples",
            unit="Gbit/s", groups=list(b.samples), series=["median"],
            values={c: {"median": statistics.median(xs)} for c, xs in b.samples.items()},
            ranges={c: {"median": (min(xs), max(xs))} for c, xs in b.samples.items()},
            samples={c: {"median": xs} for c, xs in b.samples.items()}, scale=1e9, digits=3)))
    if b.irqfd:
        metrics = {"userspace injections / interrupt": "injections_per_interrupt",
                   "MMIO exits / interrupt": "exits_per_interrupt"}
        per: dict[str, dict[str, float]] = {}
        for label, attr in metrics.items():
            per[label] = {p.wiring: v for p in b.irqfd
                             if (v := getattr(p, attr)) is not None}
        out.append(svg.render(svg.Bars(
            plot="irqfd", title="who raises each queue interrupt: single line vs a line per queue",
            unit="per interrupt", groups=list(metrics), series=[p.wiring for p in b.irqfd],
            values=per, digits=2)))
    return out


def _thresholds(b: BoardReport) -> str:
    g = b.gate
    head = (f"<h3>Thresholds</h3><p>verdict: <b class=\"{'bad' if g.violations else 'ok'}\">"
            f"{_e(g.verdict)}</b>"
            + (f" <small>(the case recorded: {_e(g.recorded)})</small>" if g.recorded else "")
            + "</p>")
    if not g.rows:
        return head + "<p>The board declares no thresholds: throughput is measured, not gated.</p>"
    rows = [[_e(r.key), _e(r.limit), _e(r.measured),
             '<span class="ok">met</span>' if r.met else '<span class="bad">missed</span>']
            for r in g.rows]
    return head + _table(["threshold", "limit", "measured", ""], rows,
                         f'class="thresholds" data-board="{_e(b.name)}"')


def _baseline(b: BoardReport) -> str:
    c = b.baseline
    if c is None:
        return ""
    out = [f"<h3>Against the baseline (board {_e(b.baseline_name)})</h3>"]

    def changes(title: str, items: list[compare.TestChange], cls: str) -> None:
        if items:
            out.append(f"<p class=\"{cls}\">{title}: {len(items)}</p>" + _table(
                ["case", "baseline", "now"], [[_e(t.nodeid), _e(t.old), _e(t.new)] for t in items]))

    changes("Tests that regressed", c.regressed, "bad")
    changes("Tests that were fixed", c.fixed, "ok")
    changes("Other changes of cases", c.other, "warn")
    if not (c.regressed or c.fixed or c.other):
        out.append("<p>No case changed its outcome.</p>")
    out.append("<p>Modes that changed: " + (str(len(c.modes)) if c.modes else "none") + "</p>")
    if c.modes:
        out.append(_table(["what", "baseline", "now"],
                          [[_e(m.what), _e(m.old), _e(m.new)] for m in c.modes]))
    out.append(f"<p>Counters that moved: {len(c.counters) or 'none'} <small>(rule: "
               f"{_e(compare.COUNTER_RULE)})</small></p>")
    if c.counters:
        out.append(_table(["counter", "baseline", "now"],
                          [[_e(m.what), _e(m.old), _e(m.new)] for m in c.counters]))
    out.append(f"<p>Throughput <small>(rule: {_e(stats.RULE)})</small></p>")
    rows = []
    for t in c.throughput:
        ch = t.change
        interval = ("—" if ch.low is None or ch.high is None
                    else f"{ch.ratio:.3f} [{ch.low:.3f}, {ch.high:.3f}]")
        cls = {"regressed": "bad", "improved": "ok"}.get(ch.verdict, "")
        rows.append([_e(t.config), _gbps(t.old_median), _gbps(t.new_median), interval,
                     "—" if ch.noise is None else f"{ch.noise:.1%}",
                     f'<span class="{cls}">{_e(ch.verdict)}</span><br><small>{_e(ch.reason)}</small>'])
    out.append(_table(["configuration", "baseline median Gbit/s", "now", "ratio [95 % interval]",
                       "noise", "decision"], rows, 'class="throughput-changes"'))
    return "\n".join(out)


def _provenance(b: BoardReport) -> str:
    prov = b.run.provenance or {}
    hil = prov.get("hil") or {}
    rows = [["hil", _e(f"{hil.get('version')} {hil.get('commit')}"
                       + (" (dirty)" if hil.get("dirty") else ""))]]
    for artefact, m in (prov.get("firmware") or {}).items():
        if isinstance(m, dict):
            rows.append([_e(artefact), _e(f"key {str(m.get('key'))[:16]}")])
            for fact in ("kernel", "guest_kernel", "debug_guest_kernel", "patched_vmm", "stock_vmm"):
                if isinstance(m.get(fact), dict):
                    rows.append([_e(fact), _e(", ".join(f"{k} {v}" for k, v in m[fact].items()))])
    for series, patches in (prov.get("patches") or {}).items():
        rows.append([_e(f"{series} patches"),
                     "<br>".join(_e(f"{p.get('patch')}: {p.get('patch_id')}") for p in patches)])
    return "<details><summary>Provenance</summary>" + _table(["", ""], rows) + "</details>"


def _board(b: BoardReport) -> str:
    parts = [f'<section class="board" data-board="{_e(b.name)}"><h2>Board {_e(b.name)}: '
             f'<span class="{_verdict_class(b.verdict.code)}">{_e(b.verdict.decision)}</span></h2>',
             _failures(b), _matrix(b), "<h3>Plots</h3>"]
    ps = plots(b)
    parts += ps or ["<p>No measurement to plot.</p>"]
    parts += [_thresholds(b), _baseline(b), _provenance(b)]
    cases = [[_e(c.nodeid), _e(c.outcome + (f" ({c.kind})" if c.kind else "")), f"{c.time:.1f}"]
             for c in b.cases.values()]
    parts.append("<details><summary>All cases</summary>"
                 + _table(["case", "outcome", "s"], cases) + "</details></section>")
    return "\n".join(parts)


def render(report: Report) -> str:
    code = report.overall
    from hil.results.verdicts import DECISIONS

    head = (f"<h1>hil qualification report</h1><p><small>results: {_e(report.results.directory)}"
            f"; generated {_e(report.generated)}"
            + (f"; baseline: {_e(report.baseline.directory)}" if report.baseline else "")
            + "</small></p>"
            f'<p>Overall: <span id="overall-verdict" class="{_verdict_class(code)}">'
            f"{_e(DECISIONS[code])}</span> <small>(exit {int(code)})</small></p>")
    body = [head, _summary(report), _notes(report), *(_board(b) for b in report.boards)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>hil report: {_e(DECISIONS[code])}</title><style>{CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
