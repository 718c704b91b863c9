"""Parsing a run's files: JUnit, measurements.jsonl, consoles; the plots' SVG."""

import json
import re

from hil.results import console, junit, measurements, svg

PASS = "results/pass"


def test_junit_cases_come_back_with_pytest_node_ids(data):
    suite = junit.parse((data / PASS / "junit.xml").read_text())
    recorded = json.loads((data / PASS / "verdict.json").read_text())["cases"]
    assert [c.nodeid for c in suite.cases] == list(recorded)
    assert {c.outcome for c in suite.cases} == {"passed"}
    assert suite.properties["hil.commit"] == "2427d4589aa646868b2bd313a2654ddcb51f364b"


def test_junit_failures_carry_their_kind_and_message(data):
    cases = junit.merge_outcomes(junit.parse((data / "results/fail/junit.xml").read_text()).cases)
    failed = {c.nodeid: c for c in cases.values() if c.outcome == "failed"}
    assert sorted(c.kind for c in failed.values()) == ["infrastructure", "product", "product"]
    infra = next(c for c in failed.values() if c.kind == "infrastructure")
    assert "did not finish within 30 s" in infra.message


def test_node_ids_keep_test_classes():
    assert junit.nodeid("testcases.test_x.TestY", "test_z[a.b]") == "testcases/test_x.py::TestY::test_z[a.b]"


def test_a_truncated_junit_file_yields_its_complete_cases(data):
    text = (data / PASS / "junit.xml").read_text()
    cut = text[:text.index("test_multi_irq")]  # mid-file, as a killed writer leaves it
    suite = junit.parse(cut)
    complete = len(re.findall(r"<testcase\b[^>]*?(?:/>|>.*?</testcase>)", cut, re.S))
    assert len(suite.cases) == complete > 0
    assert "not well-formed" in suite.problems[0]


def test_a_half_written_last_line_is_skipped_and_reported(data):
    text = (data / PASS / "measurements.jsonl").read_text()
    lines = text.splitlines()
    parsed = measurements.parse("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    assert len(parsed.rows) == len(lines) - 1
    assert parsed.problems and "half-written last line" in parsed.problems[0]
    assert measurements.parse(text).problems == []


def test_nested_values_written_as_json_strings_are_read_as_data(data):
    rows = measurements.parse((data / PASS / "measurements.jsonl").read_text()).rows
    wirings = [r for r in rows if r.name == "throughput.wiring"]
    assert wirings and all(isinstance(r.value, dict) for r in wirings)


def test_a_failure_is_found_in_the_console_by_its_kernel_report(data):
    failure = (data / "guest-dmesg-warn.txt").read_text()
    kernel = console.kernel_lines(failure)
    assert any("WARNING: CPU: 1 PID: 88" in k for k in kernel)
    text = (data / "results/fail/console/console_main_guest-serial").read_text()
    ex = console.locate("main_guest-serial", text, console.anchors("", kernel))
    assert ex is not None
    assert any("WARNING: CPU: 1 PID: 88" in ln for ln in ex.lines)
    assert text.splitlines()[ex.first_line - 1].replace("\r", "") == ex.lines[0]


def test_no_anchor_no_excerpt(data):
    text = (data / PASS / "console/console_main_guest-serial").read_text()
    assert console.locate("g", text, console.anchors("assert 'foo-bar-baz-qux' == 'x'")) is None


def test_console_range_by_byte_offsets():
    data = b"head\nline one\nline two\nline three\n"
    start = data.index(b"line two")
    ex = console.tail("c", data, start, len(data))
    assert ex.first_line == 3 and ex.lines[:2] == ("line two", "line three")


def test_a_plot_is_svg_with_its_name_title_and_one_bar_per_value():
    page = svg.render(svg.Bars(plot="p", title="T <1>", unit="u", groups=["a", "b"],
                               series=["x", "y"], values={"a": {"x": 1, "y": 0}, "b": {"x": 3}},
                               ranges={"b": {"x": (2, 4)}}, samples={"b": {"x": [2, 3, 4]}}))
    assert page.startswith('<svg xmlns="http://www.w3.org/2000/svg" data-plot="p"')
    assert "<title>T &lt;1&gt;</title>" in page
    assert page.count('class="bar"') == 3 and page.count('class="sample"') == 3
    assert svg.nice_max(3.2) == 4 and svg.nice_max(0) == 1
