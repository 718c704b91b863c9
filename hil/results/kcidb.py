"""The results of a run as a KCIDB v5 document (checkouts, builds, tests), for KernelCI.

Pure: the report's model in, a JSON-ready dict out; `validate` checks it with kcidb-io.

Mapping: one checkout per run (what was qualified: hil's commit, the patch series' patch ids),
one build per board (its firmware), one test per case, and one DONE test per numeric
measurement below its case. Statuses: a product failure is FAIL; an infrastructure failure
ERROR (the case did not complete, the product is not blamed); a case skipped because the lab
broke MISS; any other skip SKIP.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hil.results.measurements import number
from hil.verdict import BROKEN_STRATEGY

if TYPE_CHECKING:
    from hil.results.report import BoardReport, Report

ORIGIN = "hil"
VERSION = {"major": 5, "minor": 3}
MAX_EXCERPT = 16384
UNITS = {"bit/s": ("bit/s", "metric"), "s": ("s", None), "count": (None, None),
         "exits": ("exits", None)}


def _id(*parts: str) -> str:
    return f"{ORIGIN}:" + ":".join(parts)


def _segment(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", text).strip("-") or "x"


def test_path(nodeid: str) -> str:
    """`testcases/test_x.py::test_y[a-b]` -> `hil.test_x.test_y.a-b` (KCIDB path syntax)."""
    module, _, rest = nodeid.partition("::")
    name, _, param = rest.partition("[")
    parts = [ORIGIN, _segment(module.rsplit("/", 1)[-1].removesuffix(".py"))]
    parts += [_segment(p) for p in name.split("::") if p]
    if param:
        parts.append(_segment(param.rstrip("]")))
    return ".".join(parts)


def status(outcome: str, kind: str | None, message: str = "") -> str:
    if outcome == "passed":
        return "PASS"
    if outcome == "failed":
        return "FAIL" if kind == "product" else "ERROR"
    return "MISS" if BROKEN_STRATEGY in message else "SKIP"


def _checkout(report: Report, run: str) -> dict[str, Any]:
    prov = next((b.run.provenance for b in report.boards if b.run.provenance), None) or {}
    hil = prov.get("hil") or {}
    patches = prov.get("patches") or {}
    out: dict[str, Any] = {
        "id": _id(run), "origin": ORIGIN, "tree_name": "hil-multi-irq-virtio-mmio",
        "comment": "multi-IRQ virtio-mmio: Linux 6.12 and QEMU 10.0 patch series",
        "misc": {"hil_version": hil.get("version"), "hil_commit": hil.get("commit"),
                 "hil_dirty": hil.get("dirty"),
                 "patch_ids": {s: [p.get("patch_id") for p in ps] for s, ps in patches.items()}},
    }
    if report.start_time:
        out["start_time"] = report.start_time
    return out


def _build(board: BoardReport, run: str) -> dict[str, Any]:
    prov = board.run.provenance or {}
    firmware = {}
    for artefact, manifest in (prov.get("firmware") or {}).items():
        if isinstance(manifest, dict):
            firmware[artefact] = {k: v for k, v in manifest.items() if k != "packages"}
    return {
        "id": _id(run, _segment(board.name)), "checkout_id": _id(run), "origin": ORIGIN,
        "architecture": "arm64", "config_name": "hil-board-image",
        "comment": f"board {board.name}: the firmware qualified on it",
        "status": "PASS" if prov else "MISS",
        "misc": {"board": board.name, "firmware": firmware,
                 "images": prov.get("images") or {}},
    }


def _tests(board: BoardReport, run: str) -> list[dict[str, Any]]:
    build_id = _id(run, _segment(board.name))
    env = {"comment": f"board {board.name}",
           "misc": {"board": board.name, "options": board.run.options}}
    failures = {f.nodeid: f for f in board.failures}
    out = []
    for nodeid, case in board.cases.items():
        path = test_path(nodeid)
        test: dict[str, Any] = {
            "id": _id(run, _segment(board.name), path), "build_id": build_id, "origin": ORIGIN,
            "path": path, "status": status(case.outcome, case.kind, case.message),
            "environment": env, "duration": case.time,
            "misc": {"nodeid": nodeid},
        }
        if case.kind:
            test["misc"]["failure_kind"] = case.kind
        if case.outcome != "passed":
            text = case.message
            f = failures.get(nodeid)
            if f and f.kernel:
                text += "\n\nkernel log:\n" + "\n".join(f.kernel)
            test["log_excerpt"] = text[:MAX_EXCERPT]
        out.append(test)
    for i, m in enumerate(board.run.rows):
        v = number(m.value)
        if v is None:
            continue
        # A measurement's dotted name (and its configuration, if any) extend its case's path.
        tail = [_segment(p) for p in m.name.split(".")]
        if m.ctx("config"):
            tail.append(_segment(str(m.ctx("config"))))
        path = ".".join([test_path(m.test) if m.test else ORIGIN, *tail])
        unit, prefix = UNITS.get(m.unit, (m.unit or None, None))
        num: dict[str, Any] = {"value": v}
        if unit:
            num["unit"] = unit
        if prefix:
            num["prefix"] = prefix
        out.append({
            "id": _id(run, _segment(board.name), path, str(i)), "build_id": build_id,
            "origin": ORIGIN, "path": path, "status": "DONE", "number": num,
            "environment": env, "misc": {"measurement": m.name, **dict(m.context)},
        })
    return out


def document(report: Report) -> dict[str, Any]:
    run = _segment(report.results.directory.name)
    return {
        "version": dict(VERSION),
        "checkouts": [_checkout(report, run)],
        "builds": [_build(b, run) for b in report.boards],
        "tests": [t for b in report.boards for t in _tests(b, run)],
    }


def validate(doc: dict[str, Any]) -> None:
    """Raises jsonschema's ValidationError if `doc` is not a valid KCIDB v5.3 document."""
    import kcidb_io

    kcidb_io.schema.V5_3.validate(doc)
