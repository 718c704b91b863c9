"""The pytest plugin on a board of fake drivers: verdicts, exit codes, recovery, provenance."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .fake_lab import env_file, events

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[2]

CASES = """
import pytest

def test_board_answers(board):
    board.check("true")

def test_guest_answers(guest):
    guest.check("true")
"""


@pytest.fixture
def qualify(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))

    def run(cases, *args, **env_kw):
        pytester.makepyfile(test_cases=cases)
        env = env_file(pytester.path, **env_kw)
        results = pytester.path / "results"
        r = pytester.runpytest_subprocess("--lg-env", str(env), "--hil-results", str(results),
                                          "-p", "no:cacheprovider", *args)
        return r, results

    return run


def kinds(results):
    root = ET.parse(results / "junit.xml").getroot()
    return {tc.get("name"): [p.get("value") for p in tc.iter("property")
                             if p.get("name") == "hil_failure_kind"]
            for tc in root.iter("testcase")}


def test_a_run_where_every_case_passes_exits_0_and_records_what_it_qualified(qualify, pytester):
    r, results = qualify(CASES)
    assert r.ret == 0, r.stdout.str()
    r.stdout.fnmatch_lines(["verdict: pass: every selected case passed (exit 0)"])
    assert json.loads((results / "verdict.json").read_text())["exit_code"] == 0
    prov = json.loads((results / "provenance.json").read_text())
    assert prov["place"]["target"] == "main" and prov["board_options"]["board_cpus"] == 2
    assert len(prov["hil"]["commit"]) == 40
    assert {p["patch"] for p in prov["patches"]["kernel"]} and \
        all(p["patch_id"] for p in prov["patches"]["kernel"])
    suite_props = {p.get("name"): p.get("value") for p in
                   ET.parse(results / "junit.xml").getroot().find("testsuite")
                   .find("properties").iter("property")}
    assert suite_props["hil.commit"].startswith(prov["hil"]["commit"])
    assert suite_props["environment.sha256"] == prov["environment"]["sha256"]
    assert json.loads(suite_props["board_options"])["board_cpus"] == 2
    assert (results / "environment.yaml").is_file()


def test_a_run_never_adds_to_an_earlier_runs_results(qualify, pytester):
    r, results = qualify(CASES)
    assert r.ret == 0
    before = (results / "junit.xml").read_bytes()
    r2 = pytester.runpytest_subprocess("--lg-env", str(pytester.path / "env.yaml"),
                                       "--hil-results", str(results), "-p", "no:cacheprovider")
    assert r2.ret == 4
    r2.stderr.fnmatch_lines(["*results directory * already holds a run*"])
    assert (results / "junit.xml").read_bytes() == before
    assert events(pytester.path).count("power on") == 1  # nothing was powered for the second


def test_a_failed_assertion_is_a_product_failure_exit_1(qualify):
    r, results = qualify(CASES + "\ndef test_mode(guest):\n    assert 'shared' == 'per-vq'\n")
    assert r.ret == 1
    assert kinds(results)["test_mode"] == ["product"]
    r.stdout.fnmatch_lines(["product failures: 1", "verdict: do not ship*(exit 1)"])


def test_a_harness_bug_is_never_a_product_verdict(qualify):
    r, results = qualify(CASES + "\ndef test_bug(board_options, board):\n"
                                 "    board_options['vmms']['patched']\n")
    assert r.ret == 2
    assert kinds(results)["test_bug"] == ["infrastructure"]


def test_a_guest_hanging_while_its_board_answers_is_product_and_the_board_is_power_cycled(
        qualify, pytester):
    cases = ("def test_hang(guest):\n    guest.check('sleep 999')\n"
             "def test_next(board):\n    board.check('true')\n")
    r, results = qualify(cases, "-p", "no:randomly", guest_hang_on=("sleep 999",))
    assert r.ret == 1, r.stdout.str()
    assert kinds(results)["test_hang"] == ["product"]
    assert "guest: `sleep 999` did not finish within 60 s" in r.stdout.str()
    log = events(pytester.path)
    assert log.count("power on") == 2
    assert log.index("power off", log.index("guest-shell: sleep 999")) < \
        log.index("power on", log.index("guest-shell: sleep 999"))


def test_a_board_shell_timeout_is_infrastructure(qualify):
    r, results = qualify("def test_t(board):\n    board.check('cat /proc/interrupts')\n",
                         board_hang_on=("cat /proc/interrupts",))
    assert r.ret == 2
    assert kinds(results)["test_t"] == ["infrastructure"]


def test_a_board_that_never_boots_breaks_the_lab_and_the_run_is_inconclusive(qualify, pytester):
    r, results = qualify(CASES + "\ndef test_third(board):\n    pass\n", board_boot="hang")
    assert r.ret == 2
    assert kinds(results)["test_board_answers"] == ["infrastructure"]
    r.stdout.fnmatch_lines(["*board did not reach its prompt within 1 s*",
                            "not run: 2 case(s) after the lab broke (infrastructure)",
                            "the board never answered on its shell",
                            "verdict: inconclusive*(exit 2)"])
    assert events(pytester.path).count("power on") == 1  # never_retry: one attempt


def test_a_run_where_every_case_was_skipped_is_not_a_pass_and_names_the_feature(qualify):
    cases = ("import pytest\npytestmark = pytest.mark.lg_feature('multi-irq-vmm')\n" + CASES)
    r, _ = qualify(cases)
    assert r.ret == 5
    r.stdout.fnmatch_lines(["not run: 2 case(s) need the feature 'multi-irq-vmm', which the "
                            "board lacks", "verdict: nothing qualified*(exit 5)"])


def test_initial_state_takes_over_a_running_guest_without_powering(qualify, pytester):
    r, _ = qualify(CASES, "--lg-initial-state", "guest")
    assert r.ret == 0, r.stdout.str()
    assert "power on" not in events(pytester.path)


def test_a_kernel_warning_fails_a_case_that_passed_as_a_product_failure(qualify):
    cases = ("import pytest\n"
             "def test_warns(guest):\n    guest.check('provoke')\n"
             "@pytest.mark.kernel_log_allows(r'WARNING: CPU: \\d+ PID: \\d+ at drivers/virtio')\n"
             "def test_warns_on_purpose(guest):\n    guest.check('provoke')\n"
             "def test_after(guest):\n    guest.check('true')\n")
    r, results = qualify(cases, guest_warn_on=("provoke",))
    assert r.ret == 1, r.stdout.str()
    assert kinds(results) == {"test_warns": ["product"], "test_warns_on_purpose": [],
                              "test_after": []}
    r.stdout.fnmatch_lines(["*guest*warn*", "*WARNING: CPU: 0 PID: 57 at drivers/virtio*"])


def test_long_campaigns_run_only_when_asked_for(qualify, pytester):
    cases = CASES + "\n@pytest.mark.campaign\ndef test_loop(guest):\n    pass\n"
    r, _ = qualify(cases)
    assert r.ret == 0
    r.assert_outcomes(passed=2, deselected=1)
    r2 = pytester.runpytest_subprocess("--lg-env", str(pytester.path / "env.yaml"),
                                       "--hil-results", str(pytester.path / "r2"),
                                       "--hil-campaigns", "-p", "no:cacheprovider")
    r2.assert_outcomes(passed=3)


def test_listing_the_cases_writes_no_run_and_names_no_board(qualify, pytester):
    cases = CASES + "\n@pytest.mark.campaign\ndef test_loop(guest):\n    pass\n"
    r, results = qualify(cases, "--collect-only", "-q")
    assert r.ret == 0
    r.stdout.fnmatch_lines(["test_cases.py::test_board_answers", "test_cases.py::test_guest_answers",
                            "2/3 tests collected (1 deselected)*"])
    assert not results.exists()
    r.stdout.no_fnmatch_line("*verdict*")
    assert events(pytester.path) == []


def test_benchmarks_run_only_when_asked_for(qualify, pytester):
    cases = CASES + "\n@pytest.mark.bench\ndef test_wirings(guest):\n    pass\n"
    r, _ = qualify(cases)
    assert r.ret == 0
    r.assert_outcomes(passed=2, deselected=1)
    r2 = pytester.runpytest_subprocess("--lg-env", str(pytester.path / "env.yaml"),
                                       "--hil-results", str(pytester.path / "r2"),
                                       "--hil-bench", "-p", "no:cacheprovider")
    r2.assert_outcomes(passed=3)


@pytest.mark.parametrize(("icount", "says"), [
    ("shift=one", "*options.icount 'shift=one': shift must be 0..10*"),
    ("shift=0,align=on,sleep=off", "*align=on needs sleep=on*"),
    # The fake board is no VirtualBoardDriver: a real board cannot count instructions.
    ("shift=0", "*options.icount needs a VirtualBoardDriver*"),
])
def test_a_bad_cost_model_option_is_a_usage_error_before_anything_is_powered(
        qualify, pytester, icount, says):
    r, _ = qualify(CASES, options={"icount": icount})
    assert r.ret == 4
    r.stderr.fnmatch_lines([says])
    assert events(pytester.path) == []


@pytest.mark.parametrize("thresholds", [{"vhost-net-irqfd_min_gbs": 1.5},
                                        {"vhost-net-msi_over_vhost-net": 1.1},
                                        {"vhost-net_min_gbps": "fast"},
                                        {"vhost-net_max_exits_per_irq": 9},
                                        {"vhost-net-irqfd-shard_tps_over_vhost-net": 1.1}])
def test_bad_thresholds_are_a_usage_error_before_anything_is_powered(qualify, pytester,
                                                                    thresholds):
    r, _ = qualify(CASES, options={"thresholds": thresholds})
    assert r.ret == 4
    r.stderr.fnmatch_lines(["*target 'main': options.thresholds: threshold *"])
    assert events(pytester.path) == []


def test_a_run_whose_cases_all_restart_the_guest_still_reads_the_guests_kernel_log(qualify):
    """`-k` can select only cases that start the guest with settings of their own
    (`boot_guest`): their guests' warnings fail them as much as anyone's."""
    cases = ("def test_restarts(boot_guest):\n    boot_guest(cpus=2).check('provoke')\n")
    r, results = qualify(cases, guest_warn_on=("provoke",))
    assert r.ret == 1, r.stdout.str()
    assert kinds(results) == {"test_restarts": ["product"]}
    r.stdout.fnmatch_lines(["*WARNING: CPU: 0 PID: 57 at drivers/virtio*"])


def test_a_warning_of_a_guest_that_the_case_restarted_is_reported_once(qualify):
    cases = ("def test_restarts(guest, boot_guest):\n    guest.check('provoke')\n"
             "    boot_guest(cpus=2)\n    boot_guest(cpus=1)\n")
    r, results = qualify(cases, guest_warn_on=("provoke",))
    assert r.ret == 1
    assert kinds(results)["test_restarts"] == ["product"]
    (failure,) = ET.parse(results / "junit.xml").getroot().iter("failure")
    assert failure.get("message").count("WARNING: CPU: 0 PID: 57 at drivers/virtio") == 1


def test_a_power_switch_that_cannot_be_bound_breaks_the_lab_once(qualify, pytester):
    r, results = qualify(CASES + "\ndef test_third(board):\n    pass\n",
                         power_missing="board-kernel")
    assert r.ret == 2
    root = ET.parse(results / "junit.xml").getroot()
    assert len(list(root.iter("error"))) == 1 and len(list(root.iter("skipped"))) == 2
    r.stdout.fnmatch_lines(["*board image 'board-kernel' not found*",
                            "not run: 2 case(s) after the lab broke (infrastructure)"])


def test_a_failed_case_records_where_its_console_output_lies(qualify):
    # The fake lab has no console: the cases write to a console log themselves.
    cases = '''
from pathlib import Path

def log(request, text):
    d = Path(request.config.getoption("hil_results")) / "console"
    d.mkdir(exist_ok=True)
    with (d / "console_main_fake").open("ab") as f:
        f.write(text)

def test_passes(board, request):
    log(request, b"an earlier case's line\\n")

def test_fails(board, request):
    log(request, b"the failing case's line\\n")
    assert False
'''
    r, results = qualify(cases)
    assert r.ret == 1
    props = {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")}
             for tc in ET.parse(results / "junit.xml").getroot().iter("testcase")}
    assert "hil_console" not in props["test_passes"]
    (name, (start, end)), = json.loads(props["test_fails"]["hil_console"]).items()
    data = (results / "console" / f"console_{name}").read_bytes()
    assert data[start:end] == b"the failing case's line\n"


def test_a_file_of_several_boards_needs_the_target_named_before_anything_is_powered(
        qualify, pytester):
    r, _ = qualify(CASES, targets=("alpha", "beta"))
    assert r.ret == 4, r.stdout.str()
    r.stderr.fnmatch_lines(["*targets alpha, beta and none named 'main': choose one with "
                            "--hil-target NAME*"])
    assert events(pytester.path) == []


def test_the_target_named_is_the_board_qualified(qualify, pytester):
    cases = CASES + "\ndef test_cpus(board_options, target):\n" \
                    "    assert (target.name, board_options['board_cpus']) == ('beta', 2)\n"
    r, results = qualify(cases, "--hil-target", "beta", targets=("alpha", "beta"))
    assert r.ret == 0, r.stdout.str()
    prov = json.loads((results / "provenance.json").read_text())
    assert prov["place"]["target"] == "beta" and prov["board_options"]["board_cpus"] == 2


def test_an_unknown_target_is_named_with_the_ones_there_are(qualify, pytester):
    r, _ = qualify(CASES, "--hil-target", "gamma", targets=("alpha", "beta"))
    assert r.ret == 4
    r.stderr.fnmatch_lines(["*--hil-target gamma: the environment has no such target "
                            "(it has alpha, beta)*"])


FULL_DISK = """
import errno
from hil.results import rundir

_write = rundir.write_atomic


def _full(path, text):
    if path.name == "verdict.json":
        raise OSError(errno.ENOSPC, "No space left on device")
    _write(path, text)


rundir.write_atomic = _full
"""


def test_a_full_disk_ends_the_run_inconclusive_with_a_message(qualify, pytester):
    pytester.makeconftest(FULL_DISK)
    r, results = qualify(CASES)
    assert r.ret == 2  # never pytest's 3
    r.stderr.fnmatch_lines(["*verdict could not be written*No space left on device*"
                            "inconclusive (exit 2)*"])
    assert (results / "junit.xml").exists()  # what was written stays


NEEDS_VMMS = """
import pytest

@pytest.mark.needs_options("vmms")
def test_patched_vmm(board, board_options):
    board.check("test -x " + board_options["vmms"]["patched"])

def test_board_answers(board):
    board.check("true")
"""


def test_an_option_a_selected_case_reads_but_the_target_lacks_stops_the_run_before_power_on(
        qualify, pytester):
    r, _ = qualify(NEEDS_VMMS)
    assert r.ret == 4, r.stdout.str()
    r.stderr.fnmatch_lines(["*target 'main' of *env.yaml:*",
                            "*options.vmms is not declared, and test_patched_vmm read it*"])
    r.stdout.fnmatch_lines(["verdict: *(exit 4)"])
    assert "power on" not in events(pytester.path)


def test_a_case_that_needs_an_option_and_is_deselected_does_not_stop_the_run(qualify, pytester):
    r, _ = qualify(NEEDS_VMMS, "-k", "not patched")
    assert r.ret == 0, r.stdout.str()


def test_a_declared_option_lets_the_case_run(qualify, pytester):
    r, _ = qualify(NEEDS_VMMS, options={"board_cpus": 2, "thresholds": {},
                                        "vmms": {"stock": "/bin/true", "patched": "/bin/true"}})
    assert r.ret == 0, r.stdout.str()


def test_a_run_powers_the_board_off_when_it_ends(qualify, pytester):
    """As LAVA does at the end of a job: a board left on spins for nobody."""
    r, _ = qualify(CASES)
    assert r.ret == 0
    power = [e for e in events(pytester.path) if e.startswith("power ")]
    assert power[-1] == "power off" and "power on" in power, power


def test_keep_powered_leaves_the_board_on_for_whoever_looks_next(qualify, pytester):
    r, _ = qualify(CASES, "--hil-keep-powered")
    assert r.ret == 0
    power = [e for e in events(pytester.path) if e.startswith("power ")]
    assert power[-1] == "power on", power
