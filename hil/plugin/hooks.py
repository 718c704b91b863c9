"""pytest hooks of a qualification run: options and markers, the run's directory, failure
kinds by phase, the kernel log scan after each case, the verdict and the exit code."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from labgrid.consoleloggingreporter import ConsoleLoggingReporter

from hil import verdict
from hil.errors import ConfigError, HilError, KernelLogFindings
from hil.firmware.cache import default_images
from hil.labgrid import kernel_logs
from hil.plugin import reservation
from hil.plugin.session import FAILURE_KIND, PHASE, RUN, Run, current_run
from hil.preflight import envfile, places
from hil.results import console, rundir
from hil.verdict import Kind, Phase

# The images `hil firmware build` made: under HIL_CACHE, wherever that is.
os.environ.setdefault("HIL_IMAGES", str(default_images()))

NOT_GATED = "not gated"


def _failure_message(report: pytest.TestReport) -> str:
    """A failure in one line: the exception and what it says first (a kernel log finding's
    first report), not the traceback's last line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " / ".join(lines[:2])[:300]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil")
    group.addoption("--hil-results", default=None, metavar="DIR",
                    help="this run's results directory, new or empty (default: a new "
                         "results/<run id>, with results/latest pointing at it)")
    group.addoption("--hil-campaigns", action="store_true",
                    help="also run the long campaigns (cases marked `campaign`: debug-kernel "
                         "loops); `hil qualify --release` and `--campaigns` set it")
    group.addoption("--hil-bench", action="store_true",
                    help="also run the benchmarks (cases marked `bench`: every interrupt "
                         "wiring's cost, several runs each); `hil bench --wiring` sets it")
    group.addoption("--hil-target", default=None, metavar="NAME",
                    help="the environment's target to qualify (default: `main`, else the "
                         "target whose RemotePlace is the reserved place or LG_PLACE, else the "
                         "only one)")
    group.addoption("--hil-keep-powered", action="store_true",
                    help="leave the board powered when the run ends (default: power it off, "
                         "as LAVA does at the end of a job)")
    reservation.addoption(group)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "board: needs a shell on a board")
    config.addinivalue_line("markers", "guest: needs a shell in the nested KVM guest")
    config.addinivalue_line("markers", "throughput: measures iperf3 throughput")
    config.addinivalue_line("markers", "irqfd: counts who injects the guest's interrupts")
    config.addinivalue_line(
        "markers", "kernel_log_allows(*regex): kernel reports the case provokes on purpose")
    config.addinivalue_line(
        "markers", "campaign: a long campaign, run only with --hil-campaigns")
    config.addinivalue_line(
        "markers", "bench: a benchmark that prints figures, run only with --hil-bench")
    config.addinivalue_line(
        "markers", "needs_options(*names): board options the case reads; a target that "
        "leaves one out stops the run before power-on")
    lg_env = config.getoption("lg_env", None) or os.environ.get("LG_ENV")
    if not lg_env or hasattr(config, "workerinput"):
        return
    # Everything the user can get wrong is checked here, before anything is powered.
    try:
        envfile.check(lg_env)
        # What the user named is checked, and the results directory claimed, before any wait
        # for a place (which can last an hour).
        envfile.check_target_name(lg_env, config.getoption("hil_target"))
        if config.option.collectonly:
            # Listing the cases runs none: no place is reserved and no run is written (its
            # verdict would blame a board that was never asked).
            return
        given = config.getoption("hil_results")
        directory = rundir.create(Path(given) if given else None)
        try:
            reservation.reserve(config)
        except ConfigError:
            raise
        except HilError as e:
            # No place in time, or the coordinator failed: the lab's fault, not the user's.
            pytest.exit(f"hil: {e}", returncode=int(verdict.ExitCode.INCONCLUSIVE))
        target = places.choose_target(places.target_places(Path(lg_env)),
                                      config.getoption("hil_target"),
                                      os.environ.get("LG_PLACE"))
        places.check(Path(lg_env), target)
    except HilError as e:
        raise pytest.UsageError(str(e)) from None
    if not config.option.xmlpath:
        # Runs before junitxml's own pytest_configure, which opens this path.
        config.option.xmlpath = str(directory / "junit.xml")
    # Keep every console on disk (in the run's directory unless the user chose --lg-log).
    # The reporter is started here rather than by labgrid so that error messages can name it.
    log_dir = config.getoption("lg_log", None) or str(directory / "console")
    config.option.lg_log = None
    ConsoleLoggingReporter.start(os.path.abspath(log_dir))
    config.add_cleanup(ConsoleLoggingReporter.stop)
    run = Run(directory, target=target, console_dir=Path(log_dir))
    config.stash[RUN] = run
    config.pluginmanager.register(RunHooks(run), "hil-run")
    # Registered after labgrid's plugin, so that its `target` fixture is the one used.
    config.pluginmanager.import_plugin("hil.plugin.target")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Long runs stay out of a qualification unless asked for: campaigns and benchmarks.
    for marker, option in (("campaign", "hil_campaigns"), ("bench", "hil_bench")):
        if config.getoption(option):
            continue
        held = [i for i in items if i.get_closest_marker(marker)]
        if held:
            config.hook.pytest_deselected(items=held)
            items[:] = [i for i in items if not i.get_closest_marker(marker)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Run the case, then scan the kernel logs of the board and the guest: a report there
    fails a case that passed, as a product failure."""
    item.stash[PHASE] = Phase.TEST
    run = current_run(item.config)
    lab = run.lab if run else None
    try:
        result = yield
    except Exception as e:
        # Shown beside the failure; not read from a console that is out of sync.
        if lab is not None and lab.reached and not verdict.needs_power_cycle(e):
            try:
                found = lab.case_kernel_reports(item)
            except Exception as scan_error:
                found, note = {}, f"kernel logs not scanned: {scan_error}"
                item.add_report_section("call", "kernel log", note)
            if any(found.values()):
                item.add_report_section("call", "kernel log", str(KernelLogFindings(found)))
        raise
    if lab is not None and lab.reached:
        item.stash[PHASE] = Phase.KERNEL_LOG
        kernel_logs.raise_on_findings(lab.case_kernel_reports(item))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    run = current_run(item.config)
    if run is not None and call.when == "teardown" and (
            report.failed or any(k == FAILURE_KIND for k, _ in item.user_properties)):
        # Where the failed case's own output lies in each console log, for reports.
        spans = console.ranges(run.console_marks.get(item.nodeid, {}),
                               console.sizes(run.console_dir))
        if spans:
            report.user_properties.append((console.OFFSETS_PROPERTY, json.dumps(spans)))
    if run is None or not report.failed or call.excinfo is None:
        return report
    known = [v for k, v in item.user_properties if k == FAILURE_KIND]
    if known and call.when == "setup":
        kind = known[-1]  # the fixture that reached the board classified it already
    else:
        phase = item.stash.get(PHASE, Phase.LAB) if call.when == "call" else Phase.LAB
        error = call.excinfo.value
        kind = (run.lab.classify(phase, error) if run.lab else
                verdict.classify(phase, error)).value
        item.user_properties.append((FAILURE_KIND, kind))
    if (FAILURE_KIND, kind) not in report.user_properties:
        report.user_properties.append((FAILURE_KIND, kind))
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}"
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _first_infrastructure_failure(run: Run) -> str:
    bad = [n for n, r in run.cases.items() if r == Kind.INFRASTRUCTURE.value]
    return f"{bad[0]} (and {len(bad) - 1} more)" if len(bad) > 1 else (bad[0] if bad else "")


class RunHooks:
    """The hooks that count a qualification run's cases and end it with a verdict; registered
    only when there is a run."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.usage_error = False

    @pytest.hookimpl(trylast=True)  # on the cases that stay selected (-k, -m, campaigns)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        needed: dict[str, list[str]] = {}
        for item in items:
            for marker in item.iter_markers("needs_options"):
                for key in marker.args:
                    needed.setdefault(key, []).append(item.name)
        lg_env = config.getoption("lg_env", None) or os.environ.get("LG_ENV")
        if not needed or not lg_env:
            return
        missing = envfile.missing_options(
            envfile.target_options(lg_env, self.run.target), needed)
        if missing:
            raise pytest.UsageError(f"target '{self.run.target}' of {lg_env}:\n  "
                                    + "\n  ".join(missing))

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.run.console_marks[nodeid] = console.sizes(self.run.console_dir)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self.run
        if report.failed:
            kinds = [v for k, v in report.user_properties if k == FAILURE_KIND]
            result = str(kinds[-1]) if kinds else Kind.INFRASTRUCTURE.value
        elif report.skipped:
            result = f"skipped: {_skip_reason(report)}"
        elif report.when == "call":
            result = "passed"
            if any(k.endswith(".gate") and v == NOT_GATED for k, v in report.user_properties):
                run.not_gated.append(report.nodeid)
        else:
            return
        run.record(report.nodeid, result)
        # As each result arrives, so that an interrupted run loses none and a release run
        # can show progress (one JSON object per line).
        line = {"test": report.nodeid, "when": report.when, "result": result,
                "duration_s": round(report.duration, 2), "time": time.time()}
        if report.failed:
            line["message"] = _failure_message(report)
        with open(run.directory / "cases.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self.run
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            self.usage_error = True
            reservation.finishing(session.config, False)
            return
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
            run.interrupted = True
        outcome = run.outcome()
        infrastructure_failed = verdict.lab_broke(outcome)
        reservation.finishing(session.config, infrastructure_failed)
        code = verdict.exit_code(outcome)
        session.exitstatus = int(code)
        summary = {
            "exit_code": int(code),
            "verdict": verdict.VERDICTS[code],
            "passed": outcome.passed,
            "failures": {k.value: n for k, n in outcome.failures.items()},
            "skipped": dict(outcome.skipped),
            "missing_features": dict(verdict.missing_features(outcome)),
            "lab_reached": outcome.lab_reached,
            "interrupted": outcome.interrupted,
            "measured_not_gated": run.not_gated,
            "cases": run.cases,
        }
        held = reservation.held(session.config)
        if held is not None and held.lost:
            summary["lost"] = str(held.lost)
            summary["lost_reason"] = held.lost.reason.value
        try:
            rundir.write_atomic(run.directory / "verdict.json",
                                json.dumps(summary, indent=2) + "\n")
        except OSError as e:
            # A full disk (or a results directory gone): what was written stays, the verdict
            # cannot be trusted to have been recorded: inconclusive, never pytest's 3.
            session.exitstatus = int(verdict.ExitCode.INCONCLUSIVE)
            print(f"\nhil: the run's verdict could not be written to {run.directory} "
                  f"({e.strerror or e}): inconclusive (exit 2); free space and run again",
                  file=sys.stderr)
        reservation.after_run(session.config, infrastructure_failed,
                              _first_infrastructure_failure(run))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        run = self.run
        write = terminalreporter.write_line
        terminalreporter.write_sep("-", "hil verdict")
        if self.usage_error:
            # Stopped before any case ran: the error above says what to fix.
            code = verdict.ExitCode.USAGE_ERROR
            write(f"results: {run.directory}")
            write(f"verdict: {verdict.VERDICTS[code]} (exit {int(code)})")
            return
        outcome = run.outcome()
        code = verdict.exit_code(outcome)
        for kind in Kind:
            if outcome.failures[kind]:
                write(f"{kind.value} failures: {outcome.failures[kind]}")
        for feature, n in sorted(verdict.missing_features(outcome).items()):
            write(f"not run: {n} case(s) need the feature '{feature}', which the board lacks")
        broken = verdict.skipped_for_broken_lab(outcome)
        if broken:
            write(f"not run: {broken} case(s) after the lab broke (infrastructure)")
        for nodeid in run.not_gated:
            write(f"measured, not gated (the board declares no thresholds): {nodeid}")
        held = reservation.held(terminalreporter.config)
        if held is not None and held.lost:
            write(f"lost the place during the run (infrastructure): {held.lost}")
        if not outcome.lab_reached:
            write("the board never answered on its shell")
        write(f"results: {run.directory}")
        write(f"verdict: {verdict.VERDICTS[code]} (exit {int(code)})")
