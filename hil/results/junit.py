"""A run's JUnit XML as hil's plugin writes it: each case's outcome and failure kind.

Pure parsing of the text; a file that an interrupted run left truncated yields the cases that
are complete in it, and says so.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

FAILURE_KIND = "hil_failure_kind"  # the plugin's testcase property (hil/plugin/session.py)


@dataclass(frozen=True)
class Case:
    nodeid: str
    outcome: str  # passed, failed, skipped
    kind: str | None = None  # product or infrastructure, for a failed case
    message: str = ""  # the failure's or skip's message
    text: str = ""  # the failure's details (traceback, sections)
    time: float = 0.0
    properties: tuple[tuple[str, str], ...] = ()
    system_out: str = ""

    @property
    def name(self) -> str:
        return self.nodeid.rsplit("::", 1)[-1]


@dataclass
class Suite:
    cases: list[Case] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    timestamp: str | None = None
    time: float | None = None
    problems: list[str] = field(default_factory=list)


def nodeid(classname: str, name: str) -> str:
    """pytest's node id back from junitxml's classname and name: `testcases.test_x` and
    `test_y[p]` -> `testcases/test_x.py::test_y[p]` (a `Test...` class stays a `::` part)."""
    parts = classname.split(".") if classname else []
    classes: list[str] = []
    while parts and parts[-1][:1].isupper():
        classes.insert(0, parts.pop())
    module = "/".join(parts) + ".py" if parts else ""
    return "::".join([p for p in (module, *classes) if p] + [name])


def _case(el: ET.Element) -> Case:
    props = tuple((p.get("name", ""), p.get("value", "")) for p in el.iter("property"))
    kinds = [v for k, v in props if k == FAILURE_KIND]
    outcome, message, text = "passed", "", ""
    bad = el.findall("failure") + el.findall("error")
    skipped = el.find("skipped")
    if bad:
        outcome = "failed"
        message = "\n".join(b.get("message", "") for b in bad)
        text = "\n".join((b.text or "") for b in bad)
    elif skipped is not None:
        outcome = "skipped"
        message = skipped.get("message", "")
        if skipped.get("type") == "pytest.xfail":
            message = f"xfail: {message}"
    out = "\n".join((s.text or "") for s in el.findall("system-out"))
    return Case(
        nodeid=nodeid(el.get("classname", ""), el.get("name", "")),
        outcome=outcome,
        # A failure the plugin did not classify is the lab's (hil/plugin/hooks.py does the same).
        kind=(kinds[-1] if kinds else "infrastructure") if outcome == "failed" else None,
        message=message, text=text, time=float(el.get("time") or 0.0),
        properties=props, system_out=out,
    )


_TESTCASE = re.compile(r"<testcase\b[^>]*?(?:/>|>.*?</testcase>)", re.S)


def parse(text: str, source: str = "junit.xml") -> Suite:
    suite = Suite()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        # Salvage the complete testcases of a truncated file.
        for m in _TESTCASE.finditer(text):
            try:
                suite.cases.append(_case(ET.fromstring(m.group(0))))
            except ET.ParseError:
                continue
        suite.problems.append(f"{source} is not well-formed ({e}); {len(suite.cases)} complete "
                              "case(s) recovered from it")
        return suite
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        suite.timestamp = suite.timestamp or s.get("timestamp")
        if s.get("time"):
            suite.time = (suite.time or 0.0) + float(s.get("time") or 0.0)
        props = s.find("properties")
        if props is not None:
            suite.properties.update({p.get("name", ""): p.get("value", "")
                                     for p in props.findall("property")})
        suite.cases += [_case(el) for el in s.findall("testcase")]
    return suite


def merge_outcomes(cases: list[Case]) -> dict[str, Case]:
    """One case per node id: pytest writes a second testcase for a teardown error; a failure
    outranks a pass and a product failure an infrastructure one (as hil/plugin/session.py)."""
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    out: dict[str, Case] = {}
    for c in cases:
        old = out.get(c.nodeid)
        if old is None:
            out[c.nodeid] = c
            continue
        key_new = (rank[c.outcome], c.kind == "product")
        key_old = (rank[old.outcome], old.kind == "product")
        if key_new > key_old:
            out[c.nodeid] = c
    return out
