"""measurements.jsonl: one JSON object per measurement (hil/plugin/fixtures.py Measurements).

Pure parsing and look-ups. A run that was interrupted may leave its last line half-written,
and older plugins wrote some nested values as JSON strings: both are tolerated, and every line
that could not be read is reported, never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CORE = ("test", "name", "value", "unit", "time")


@dataclass(frozen=True)
class Measurement:
    test: str
    name: str
    value: Any
    unit: str = ""
    time: float | None = None
    context: tuple[tuple[str, Any], ...] = ()

    def ctx(self, key: str, default: Any = None) -> Any:
        return dict(self.context).get(key, default)


@dataclass
class Parsed:
    rows: list[Measurement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _value(v: Any) -> Any:
    # A nested value written as a JSON string (e.g. a wiring dict) is read back as data.
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v


def parse(text: str, source: str = "measurements.jsonl") -> Parsed:
    out = Parsed()
    lines = text.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            last = i == len(lines) or (i == len(lines) - 1 and lines[-1] == "")
            why = "half-written last line (interrupted run?)" if last else "not JSON"
            out.problems.append(f"{source} line {i}: {why}, skipped: {line[:80]!r}")
            continue
        if not isinstance(row, dict) or "name" not in row or "value" not in row:
            out.problems.append(f"{source} line {i}: no name or value, skipped")
            continue
        context = tuple(sorted((k, _hashable(v)) for k, v in row.items() if k not in CORE))
        out.rows.append(Measurement(
            test=str(row.get("test", "")), name=str(row["name"]), value=_value(row["value"]),
            unit=str(row.get("unit", "")), time=row.get("time"), context=context))
    return out


def named(rows: Iterable[Measurement], name: str) -> list[Measurement]:
    return [r for r in rows if r.name == name]


def first(rows: Iterable[Measurement], name: str) -> Measurement | None:
    found = named(rows, name)
    return found[0] if found else None


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
