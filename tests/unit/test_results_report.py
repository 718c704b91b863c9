"""`hil report`: verdicts, figures, HTML and the KCIDB document rebuilt from results
directories (a real passing run, a failing variant, an interrupted one, release layouts)."""

import json
import re
import shutil
from html.parser import HTMLParser

import jsonschema
import pytest

from hil import cli
from hil.measure import virtio
from hil.results import kcidb, load, measurements, report
from hil.verdict import ExitCode


@pytest.fixture
def pass_dir(data):
    return data / "results" / "pass"


@pytest.fixture
def fail_dir(data):
    return data / "results" / "fail"


def recorded(directory, name):
    rows = measurements.parse((directory / "measurements.jsonl").read_text()).rows
    return [r for r in rows if r.name == name]


def test_the_passing_run_ships_with_its_recorded_verdict(pass_dir):
    r = report.build(pass_dir)
    (board,) = r.boards
    verdict = json.loads((pass_dir / "verdict.json").read_text())
    assert board.name == "main"
    assert r.overall == ExitCode(verdict["exit_code"]) == ExitCode.PASSED
    assert board.verdict.notes == () and board.run.problems == []
    assert len(board.cases) == verdict["passed"]
    assert board.failures == []


def test_the_matrix_shows_every_documented_cell_with_the_mode_seen(pass_dir, fail_dir):
    for directory in (pass_dir, fail_dir):
        (board,) = report.build(directory).boards
        seen = {(r.ctx("guest"), r.ctx("vmm"), r.ctx("lines"), r.ctx("pairs")): r.value
                for r in recorded(directory, "fallback.mode")}
        assert len(board.matrix) == len(virtio.FALLBACK_MATRIX)
        for row, cell in zip(board.matrix, virtio.FALLBACK_MATRIX, strict=True):
            assert row.expected == cell.mode
            assert row.seen == seen[(cell.guest, cell.vmm, cell.lines, cell.pairs)]
            assert (row.status == "as documented") == (row.seen == cell.mode)
    differs = [r for r in board.matrix if r.status == "differs"]
    assert [(r.lines, r.seen, r.case) for r in differs] == [(3, "shared", "failed")]


def test_throughput_samples_are_the_recorded_iterations(pass_dir):
    (board,) = report.build(pass_dir).boards
    rows = recorded(pass_dir, "iperf3.received_bps")
    expected = {}
    for r in rows:
        if r.ctx("config"):
            expected.setdefault(r.ctx("config"), []).append(r.value)
    assert board.samples == expected
    assert board.gate.verdict == "not gated" and board.gate.recorded == "not gated"


def test_thresholds_met_or_missed(tmp_path, pass_dir):
    board_dir = tmp_path / "r"
    shutil.copytree(pass_dir, board_dir)
    prov = json.loads((board_dir / "provenance.json").read_text())
    prov["board_options"]["thresholds"] = {"virtio-net_min_gbps": 0.5,
                                           "vhost-net-irqfd_over_vhost-net": 2.0}
    (board_dir / "provenance.json").write_text(json.dumps(prov))
    (board,) = report.build(board_dir).boards
    assert board.gate.verdict == "violated"
    assert {row.key: row.met for row in board.gate.rows} == {
        "virtio-net_min_gbps": True, "vhost-net-irqfd_over_vhost-net": False}


def test_the_failing_run_does_not_ship_and_shows_each_product_failure(fail_dir):
    r = report.build(fail_dir)
    (board,) = r.boards
    assert r.overall == ExitCode.PRODUCT_FAILURE
    assert board.verdict.notes == ()  # agrees with its verdict.json
    by_id = {f.nodeid.rsplit("::", 1)[1]: f for f in board.failures}
    assert set(by_id) == {
        "test_a_line_another_driver_holds_makes_the_driver_fall_back_cleanly",
        "test_every_guest_and_vmm_combination_boots_passes_traffic_in_the_documented_mode"
        "[guest-patched-vmm-patched-lines-3-pairs-1]"}
    warn = by_id["test_a_line_another_driver_holds_makes_the_driver_fall_back_cleanly"]
    assert any("WARNING: CPU: 1 PID: 88 at kernel/irq/manage.c:1963" in k for k in warn.kernel)
    (excerpt,) = warn.excerpts
    assert excerpt.console == "main_guest-serial"
    assert any("Trying to free already-free IRQ 47" in ln for ln in excerpt.lines)
    mode = by_id["test_every_guest_and_vmm_combination_boots_passes_traffic_in_the_documented_"
                 "mode[guest-patched-vmm-patched-lines-3-pairs-1]"]
    assert mode.excerpts == () and "no console line matches" in mode.note


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.plots, self.text, self.external = [], [], [], []
        self._stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg":
            self.plots.append(a.get("data-plot"))
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(a[key])
        self._stack.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_is_self_contained_and_names_the_verdict(fail_dir, tmp_path):
    r = report.build(fail_dir)
    html_path, kcidb_path = report.write(r, tmp_path)
    page = Page()
    text = html_path.read_text()
    page.feed(text)
    assert page.external == [] and "<script" not in text
    assert ("span", {"id": "overall-verdict", "class": "verdict v1"}) in page.tags
    assert sorted(page.plots) == ["affinity", "affinity-multiqueue", "irqfd", "throughput"]
    # Each plot's first child is its <title>.
    assert len(re.findall(r'<svg [^>]*data-plot="[^"]+"[^>]*>\n<title>[^<]+</title>', text)) == 4
    assert "Trying to free already-free IRQ 47" in text
    assert "did not finish within 30 s" in text  # the infrastructure failure
    assert kcidb_path.exists()


def test_the_kcidb_document_is_valid_v5_and_maps_failure_kinds(fail_dir):
    r = report.build(fail_dir)
    doc = kcidb.document(r)
    kcidb.validate(doc)
    import kcidb_io

    assert kcidb_io.schema.V5_3.is_valid_exactly(doc)
    cases = [t for t in doc["tests"] if t["status"] != "DONE"]
    statuses = sorted(t["status"] for t in cases)
    board = r.boards[0]
    assert len(cases) == len(board.cases)
    assert statuses.count("FAIL") == 2 and statuses.count("ERROR") == 1
    assert statuses.count("PASS") == len(board.cases) - 3
    numbers = [t for t in doc["tests"] if t["status"] == "DONE"]
    assert len(numbers) == sum(
        1 for m in board.run.rows if measurements.number(m.value) is not None)
    assert len({t["id"] for t in doc["tests"]}) == len(doc["tests"])
    assert all(t["id"].startswith("hil:") and t["origin"] == "hil" for t in doc["tests"])


def test_an_invalid_kcidb_document_is_refused(pass_dir):
    doc = kcidb.document(report.build(pass_dir))
    doc["tests"][0]["status"] = "BROKEN"
    with pytest.raises(jsonschema.ValidationError):
        kcidb.validate(doc)


def interrupted_copy(src, dst):
    shutil.copytree(src, dst)
    (dst / "verdict.json").unlink()
    (dst / "session.json").unlink()
    m = dst / "measurements.jsonl"
    text = m.read_text()
    m.write_text(text[:len(text) - 40])  # the last line half-written
    return dst


def test_an_interrupted_run_is_inconclusive_and_says_what_it_lacks(pass_dir, tmp_path):
    r = report.build(interrupted_copy(pass_dir, tmp_path / "r"))
    assert r.overall == ExitCode.INCONCLUSIVE
    problems = " ".join(r.boards[0].run.problems + list(r.boards[0].verdict.notes))
    assert "half-written last line" in problems and "no verdict.json" in problems
    html_path, _ = report.write(r, tmp_path / "out")
    assert "half-written last line" in html_path.read_text()


def test_an_interrupted_run_with_a_product_failure_does_not_ship(fail_dir, tmp_path):
    r = report.build(interrupted_copy(fail_dir, tmp_path / "r"))
    assert r.overall == ExitCode.PRODUCT_FAILURE


def test_a_run_that_left_no_junit_file_is_inconclusive(pass_dir, tmp_path):
    d = interrupted_copy(pass_dir, tmp_path / "r")
    (d / "junit.xml").unlink()
    r = report.build(d)
    assert r.overall == ExitCode.INCONCLUSIVE
    assert any("no junit.xml" in p for p in r.boards[0].run.problems)
    report.write(r, tmp_path / "out")


def test_a_release_run_with_a_directory_per_board(pass_dir, fail_dir, tmp_path):
    shutil.copytree(pass_dir, tmp_path / "rpi4")
    shutil.copytree(fail_dir, tmp_path / "juno-r2")
    r = report.build(tmp_path)
    assert [(b.name, b.verdict.code) for b in r.boards] == [
        ("juno-r2", ExitCode.PRODUCT_FAILURE), ("rpi4", ExitCode.PASSED)]
    assert r.overall == ExitCode.PRODUCT_FAILURE


def test_a_release_run_with_a_junit_file_per_board(pass_dir, fail_dir, tmp_path):
    shutil.copy(pass_dir / "junit.xml", tmp_path / "junit-rpi4.xml")
    shutil.copy(fail_dir / "junit.xml", tmp_path / "junit-zcu102.xml")
    lines = []
    for board, d in (("rpi4", pass_dir), ("zcu102", fail_dir)):
        for line in (d / "measurements.jsonl").read_text().splitlines():
            lines.append(json.dumps({**json.loads(line), "board": board}))
    (tmp_path / "measurements.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "verdict-rpi4.json").write_text((pass_dir / "verdict.json").read_text())
    results = load.load(tmp_path)
    assert [b.name for b in results.boards] == ["rpi4", "zcu102"]
    r = report.build(tmp_path)
    rpi4, zcu = r.boards
    assert rpi4.verdict.code == ExitCode.PASSED
    # No verdict-zcu102.json: as if interrupted, but its product failure decides.
    assert zcu.verdict.code == ExitCode.PRODUCT_FAILURE
    assert [m.seen for m in zcu.matrix if m.lines == 3 and m.guest == "patched"] == ["shared"]
    assert [m.seen for m in rpi4.matrix if m.lines == 3 and m.guest == "patched"] == ["per-vq"]


def test_hil_report_exits_with_the_verdict(fail_dir, pass_dir, tmp_path, capsys):
    assert cli.main(["report", str(pass_dir), "--out", str(tmp_path / "p")]) == 0
    assert cli.main(["report", str(fail_dir), "--out", str(tmp_path / "f"),
                     "--baseline", str(pass_dir)]) == 1
    out = capsys.readouterr().out
    assert "overall: do not ship (exit 1)" in out
    page = (tmp_path / "f" / report.HTML).read_text()
    assert "Tests that regressed: 2" in page and "throughput-changes" in page
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 4


def test_a_case_with_recorded_console_offsets_shows_exactly_its_output(fail_dir, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(fail_dir, d)
    guest = (d / "console" / "console_main_guest-serial").read_bytes()
    start = guest.index(b"hil-guest# dmesg")
    cell = "guest-patched-vmm-patched-lines-3-pairs-1"
    junit_xml = (d / "junit.xml").read_text()
    at = junit_xml.index(f"[{cell}]")
    at = junit_xml.index("</properties>", at)
    prop = json.dumps({"main_guest-serial": [start, len(guest)]}).replace('"', "&quot;")
    (d / "junit.xml").write_text(junit_xml[:at] + f'<property name="hil_console" value="{prop}"/>'
                                 + junit_xml[at:])
    (board,) = report.build(d).boards
    (failure,) = [f for f in board.failures if cell in f.nodeid]
    (excerpt,) = failure.excerpts
    assert excerpt.lines[0] == "hil-guest# dmesg"
    assert excerpt.first_line == guest[:start].count(b"\n") + 1
    # The kernel report in that output is shown as the failure's kernel log lines.
    assert any("Trying to free already-free IRQ 47" in k for k in failure.kernel)
