"""The `hil` command: firmware builds, qualification runs, reports, benchmarks, the virtual lab
and lab host checks."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from hil.errors import ConfigError, HilError
from hil.verdict import ExitCode

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENV = REPO / "places" / "virtual.yaml"


def _firmware_build(args: argparse.Namespace) -> int:
    from hil.firmware import images

    t0 = time.monotonic()
    out = images.build()
    print(f"firmware: {out} ({time.monotonic() - t0:.1f} s)")
    return 0


def _firmware_export(args: argparse.Namespace) -> int:
    from hil.firmware import export

    who = export.sender()
    written = export.export(Path(args.out), who, args.revision)
    for path in written:
        print(path)
    print(f"firmware export: {len(written)} files under {args.out}, from {who}")
    return 0


def _firmware_spec(args: argparse.Namespace) -> int:
    from hil.firmware import spec
    from hil.firmware.cache import read_manifest

    out = spec.build(source=args.source or spec.UPSTREAM)
    manifest = read_manifest(out)
    print(f"virtio spec: {out / manifest['pdf']} ({manifest['pages']} pages)")
    return 0


def _qualify(args: argparse.Namespace) -> int:
    import pytest

    if args.build:
        _firmware_build(args)
    if args.release is not None:
        return _release(args)
    # The plugin makes the run's directory (a new results/<run id> unless --results names
    # one) and writes junit.xml, the consoles, provenance and the verdict into it.
    results = ["--hil-results", str(args.results)] if args.results else []
    extra = ["--hil-campaigns"] if args.campaigns else []
    argv = [
        str(REPO / "testcases"), "--lg-env", str(args.lg_env or DEFAULT_ENV), *results, *extra,
        "-p", "no:cacheprovider", *args.pytest_args,
    ]
    if args.reserve:
        # Last: --hil-reserve takes every word after it.
        argv += ["--hil-priority", str(args.priority), "--hil-reserve", *args.reserve]
    print(f"qualify: pytest {' '.join(argv)}")
    return int(pytest.main(argv))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _release(args: argparse.Namespace) -> int:
    """Several boards at once through a coordinator (the virtual lab's unless LG_COORDINATOR
    names one), then the report."""
    from hil import release
    from hil.results import report, verdicts
    from hil.scheduling.reservations import HEALTH_TAG, parse_request
    from hil.virtual_lab import supervisor as virtual_lab

    name = args.release or time.strftime("release-%Y%m%d-%H%M%S")
    env_file = Path(args.lg_env) if args.lg_env else release.LAB_ENV
    try:
        filters = parse_request(args.reserve or ["board=virtual"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    started: Path | None = None
    # A CI job cancelled sends SIGTERM: stop the boards as on Ctrl-C, not die leaving them.
    signal.signal(signal.SIGTERM, _interrupt)
    if not os.environ.get("LG_COORDINATOR"):
        lab_dir = virtual_lab.DEFAULT_DIR
        state = virtual_lab.LabState.read(lab_dir)
        if state is None or state.status != "ready":
            print(f"release: no coordinator given: starting the virtual lab in {lab_dir}")
            state = virtual_lab.up(lab_dir, args.lab_boards, wait_healthy=600)
            started = lab_dir
        os.environ.update(state.exports())
    try:
        places = args.boards or release.lab_places(os.environ["LG_COORDINATOR"],
                                                   {**filters, HEALTH_TAG: "good"})
        if not places:
            raise ConfigError(f"no healthy place matches {' '.join(args.reserve or [])}: "
                              "`hil lab status` shows the places")
        try:
            code, directory = release.run(name, places, Path(args.results or REPO / "results"),
                                          env_file, args.pytest_args,
                                          campaigns=args.campaigns is not False)
        except KeyboardInterrupt:
            print(f"release {name}: interrupted: inconclusive (exit 2); each board's results "
                  "so far are kept", file=sys.stderr)
            return int(ExitCode.INCONCLUSIVE)
    finally:
        if started is not None:
            virtual_lab.down(started)
    built = report.build(directory)
    html_path, _ = report.write(built, directory)
    print(f"release {name}: {verdicts.DECISIONS[code]} (exit {int(code)}), report {html_path}")
    if built.overall != code:
        # Same rule, other inputs: the report rebuilds each board's verdict from its files.
        print(f"release {name}: the report's files give {int(built.overall)} "
              f"({verdicts.DECISIONS[built.overall]}): a board's results are incomplete")
    return int(code)


def _bench(args: argparse.Namespace) -> int:
    from hil import bench

    if args.suite:
        return bench.suite(Path(args.lg_env))
    if args.wiring:
        return bench.wiring(Path(args.lg_env), args.sessions,
                            Path(args.results) if args.results else None, args.pytest_args)
    return bench.boots(Path(args.lg_env), args.runs)


def _lab_check(args: argparse.Namespace) -> int:
    import jinja2
    import yaml
    from labgrid.exceptions import NoConfigFoundError

    from hil.preflight import exporters, udev_check, udev_host

    path = Path(args.exporter)
    try:
        data = exporters.load(path)
    except (NoConfigFoundError, jinja2.TemplateError, yaml.YAMLError, OSError) as e:
        raise ConfigError(f"{path}: {e}") from e
    problems = exporters.resource_problems(path.name, data)
    if problems:
        raise ConfigError("\n".join(problems))
    resources = exporters.udev_resources(data)
    if args.udev_dump:
        devices = udev_host.read_dump(Path(args.udev_dump))
    else:
        # tty and usb always, so that a recorded dump also serves a file that adds resources.
        devices = udev_host.list_devices(udev_check.subsystems(resources) | {"tty", "usb"})
        if args.export_udev:
            udev_host.write_dump(Path(args.export_udev), devices)
            print(f"lab check: {len(devices)} devices written to {args.export_udev}")
    findings = udev_check.check_all(resources, devices)
    for f in findings:
        print("\n".join(udev_check.render(f)))
    code = udev_check.exit_code(findings)
    print(f"lab check: {len(resources)} udev-matched resources in {path.name}, "
          f"{'all resolve' if code is ExitCode.PASSED else 'not all resolve'}")
    return int(code)


def _report(args: argparse.Namespace) -> int:
    from hil.results import report, verdicts

    directory = Path(args.results_dir)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such results directory")
    baseline = Path(args.baseline) if args.baseline else None
    if baseline is not None and not baseline.is_dir():
        raise ConfigError(f"{baseline}: no such baseline results directory")
    t0 = time.monotonic()
    built = report.build(directory, baseline)
    html_path, kcidb_path = report.write(built, Path(args.out) if args.out else directory)
    for b in built.boards:
        print(f"report: {b.name}: {b.verdict.decision} ({b.verdict.text})")
    for problem in built.problems:
        print(f"report: {problem}")
    print(f"report: {html_path} and {kcidb_path} ({time.monotonic() - t0:.2f} s)")
    print(f"report: overall: {verdicts.DECISIONS[built.overall]} (exit {int(built.overall)})")
    return int(built.overall)


class _Parser(argparse.ArgumentParser):
    """A bad command line is a usage error (exit 4), not argparse's 2, which a scheduler
    would read as an inconclusive run."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE_ERROR), f"{self.prog}: error: {message}\n")


def _lab_up(args: argparse.Namespace) -> int:
    from hil.virtual_lab import supervisor as virtual_lab

    signal.signal(signal.SIGTERM, _interrupt)  # an interrupted --wait-healthy takes it down

    virtual_lab.up(Path(args.dir), args.boards, args.credentials,
                   health_interval=args.health_interval, wait_healthy=args.wait_healthy,
                   lab_host=args.lab_host, gics=args.gic, listen=args.listen)
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    from hil.virtual_lab import supervisor as virtual_lab

    virtual_lab.down(Path(args.dir))
    return 0


def _coordinator(args: argparse.Namespace) -> str:
    """--coordinator, else LG_COORDINATOR, else the virtual lab's, else labgrid's default."""
    from hil.preflight.places import DEFAULT_COORDINATOR
    from hil.virtual_lab import supervisor as virtual_lab

    if args.coordinator:
        return str(args.coordinator)
    if os.environ.get("LG_COORDINATOR"):
        return os.environ["LG_COORDINATOR"]
    state = virtual_lab.LabState.read(Path(args.dir))
    return state.coordinator if state and state.status == "ready" else DEFAULT_COORDINATOR


def _metrics_address(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give ADDR:PORT, for example "
                                         "127.0.0.1:9464")
    return address, int(port)


def _lab_status(args: argparse.Namespace) -> int:
    from hil.scheduling import metrics, status
    from hil.scheduling.coordinator import Coordinator
    from hil.virtual_lab import supervisor as virtual_lab

    with Coordinator(_coordinator(args), purpose="status") as c:
        places, reservations = c.places(), c.reservations()
        print(f"coordinator {c.address}")
        for line in status.lines(places, reservations, time.time()):
            print(line)
    print("places by health and state:")
    for line in metrics.summary(metrics.counts(places), metrics.waiting(reservations)):
        print(line)
    state = virtual_lab.LabState.read(Path(args.dir))
    url = args.metrics or os.environ.get("HIL_LAB_METRICS") or (state.metrics if state else "")
    if url:
        try:
            figures = metrics.fetch(url)
        except OSError as e:
            print(f"janitor metrics at {url}: unreachable ({e})")
        else:
            print(f"janitor ({url}):")
            for line in metrics.janitor_lines(figures):
                print(line)
    return 0


def _lab_health(args: argparse.Namespace) -> int:
    from hil.scheduling import health

    results = Path(args.results or f"results/health-{args.place}-{int(time.time())}")
    verdict, _ = health.run_check(_coordinator(args), args.place, Path(args.lg_env), results)
    return 0 if verdict == "good" else int(ExitCode.INCONCLUSIVE)


def _lab_janitor(args: argparse.Namespace) -> int:
    import logging

    from hil.scheduling.coordinator import Coordinator
    from hil.scheduling.janitor import Janitor
    from hil.scheduling.metrics import LabMetrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    coordinator = Coordinator(_coordinator(args), purpose="janitor", eager=True)
    metrics = None
    if args.metrics:
        address, port = args.metrics
        metrics = LabMetrics(coordinator.places, coordinator.reservations)
        logging.info("janitor: metrics on http://%s:%d/metrics", address,
                     metrics.serve(address, port))
    janitor = Janitor(coordinator, Path(args.lg_env), Path(args.results),
                      interval=args.interval, grace=args.grace, metrics=metrics,
                      max_checks=args.max_checks, watch_address=args.watch)
    if janitor.watch is not None:
        logging.info("janitor: holders follow their places at %s", janitor.watch.url)
    janitor.run()
    return 0


def _lab_bench(args: argparse.Namespace) -> int:
    from hil.scheduling import bench as schedbench

    if min(args.places + args.sessions) < 1 or not args.seconds > 0:
        raise ConfigError("--places, --sessions and --seconds must be above 0")
    if not 1 <= args.hosts <= 64:
        raise ConfigError("--hosts: give 1 to 64 exporter hosts")
    schedbench.main(args.places, args.sessions, args.seconds, Path(args.work),
                    clients=args.client or ("hil", "labgrid-client"),
                    initial_checks=not args.no_initial_checks, hosts=args.hosts)
    return 0


def _lab_env(args: argparse.Namespace) -> int:
    from hil.virtual_lab import supervisor as virtual_lab

    state = virtual_lab.LabState.read(Path(args.dir))
    if state is None or state.status != "ready":
        raise ConfigError(f"no virtual lab is ready in {args.dir}: run `hil lab up`")
    for k, v in state.exports().items():
        # Quoted: `eval "$(hil lab env)"` must run nothing that lab.json holds.
        print(f"export {k}={shlex.quote(v)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="hil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fw = sub.add_parser("firmware", help="build the board and guest images")
    fw_sub = fw.add_subparsers(dest="action", required=True)
    fw_sub.add_parser("build", help="build, or take from the cache").set_defaults(
        func=_firmware_build)
    spec = fw_sub.add_parser("spec", help="apply firmware/spec/ to the virtio spec's sources "
                                          "and build its PDF with makepdf.sh")
    spec.add_argument("--source", default=None,
                      help="a git repository with the spec's base commit (default: "
                           "github.com/oasis-tcs/virtio-spec)")
    spec.set_defaults(func=_firmware_spec)
    ex = fw_sub.add_parser("export", help="the series as you post them: From: and "
                                          "Signed-off-by: yours (git config), [RFC PATCH vN] "
                                          "subjects, cover letters")
    ex.add_argument("--out", default="results/series", help="where (default results/series)")
    ex.add_argument("--revision", type=int, default=None, metavar="N",
                    help="vN (default: the kernel cover letter's)")
    ex.set_defaults(func=_firmware_export)

    q = sub.add_parser("qualify", help="run the qualification testcases and write JUnit XML")
    q.add_argument("--lg-env", default=os.environ.get("LG_ENV"),
                   help="labgrid environment (default: places/virtual.yaml; with --release, "
                        "places/virtual-lab.yaml)")
    q.add_argument("--results", default=None,
                   help="this run's results directory, new or empty (default: results/<run id>)")
    q.add_argument("--release", nargs="?", const="", default=None, metavar="NAME",
                   help="a release qualification: every board at once (the healthy places "
                        "matching --reserve, default board=virtual, or --boards) with the long "
                        "campaigns, into results/NAME with its report")
    q.add_argument("--boards", nargs="+", metavar="PLACE", help="with --release: these places")
    q.add_argument("--lab-boards", type=int, default=2,
                   help="with --release and no coordinator: boards of the virtual lab started")
    q.add_argument("--no-campaigns", dest="campaigns", action="store_false", default=None,
                   help="with --release: leave out the long campaigns")
    q.add_argument("--campaigns", dest="campaigns", action="store_true",
                   help="also the long campaigns (cases marked `campaign`)")
    q.add_argument("--reserve", nargs="+", metavar="TAG=VALUE",
                   help="reserve and lock a healthy place of the coordinator first (e.g. "
                        "board=virtual, or name=virtual-0), released at the end")
    q.add_argument("--priority", type=float, default=0.0, help="of the reservation")
    q.add_argument("--no-build", dest="build", action="store_false",
                   help="do not run the firmware build first")
    q.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    q.set_defaults(func=_qualify)

    b = sub.add_parser("bench", help="time firmware cache hits and board/guest boots")
    b.add_argument("--lg-env", default=DEFAULT_ENV)
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--suite", action="store_true",
                   help="time the whole qualification suite and count its boots instead")
    b.add_argument("--wiring", action="store_true",
                   help="the cost of each interrupt wiring instead: throughput, transactions/s, "
                        "exits and injections per interrupt, VMM CPU per transaction (cases "
                        "marked `bench`; iterations: the board's bench_iterations)")
    b.add_argument("--sessions", type=int, default=1,
                   help="with --wiring: separate sessions, each from a board powered on afresh")
    b.add_argument("--results", default=None, metavar="DIR",
                   help="with --wiring: where each session's results go (DIR/session-N)")
    b.add_argument("pytest_args", nargs="*",
                   help="with --wiring: more pytest arguments (after --), e.g. -- "
                        "--hil-reserve name=rpi4 for a board of places/boards.yaml")
    b.set_defaults(func=_bench)

    rp = sub.add_parser("report", help="rebuild the HTML report and the KCIDB document of a "
                                       "results directory (exit: its verdict)")
    rp.add_argument("results_dir", metavar="RESULTS_DIR", help="a run's results directory")
    rp.add_argument("--baseline", metavar="DIR", default=None,
                    help="an earlier run's results directory to compare with")
    rp.add_argument("--out", metavar="DIR", default=None,
                    help="where report.html and kcidb.json go (default: RESULTS_DIR)")
    rp.set_defaults(func=_report)

    lab = sub.add_parser("lab", help="run the virtual lab, check a lab host")
    lab_sub = lab.add_subparsers(dest="action", required=True)
    lc = lab_sub.add_parser(
        "check", help="does each udev match of an exporter file name exactly one device here?")
    lc.add_argument("exporter", help="labgrid exporter configuration (places/exporters/*.yaml)")
    source = lc.add_mutually_exclusive_group()
    source.add_argument("--udev-dump", metavar="FILE",
                        help="check against devices recorded with --export-udev, not this host's")
    source.add_argument("--export-udev", metavar="FILE",
                        help="also write this host's devices to FILE (JSON) to send or replay")
    lc.set_defaults(func=_lab_check)
    from hil.virtual_lab import supervisor as virtual_lab
    from hil.virtual_lab.supervisor import DEFAULT_DIR

    lu = lab_sub.add_parser("up", help="start the virtual lab: coordinator, exporter, boards")
    lu.add_argument("--boards", type=int, default=2, help="virtual boards (default 2)")
    lu.add_argument("--credentials", metavar="FILE",
                    help="the power switch's user:password (mode 600; default: made up)")
    lu.add_argument("--health-interval", type=float, default=3600.0, metavar="S",
                    help="health-check each place this often (default 3600 s; and on first "
                         "use, after an infrastructure error, after a lease expired)")
    lu.add_argument("--wait-healthy", type=float, default=0.0, metavar="S",
                    help="also wait up to S seconds for the first health check of every place")
    lu.add_argument("--lab-host", choices=virtual_lab.LAB_HOSTS, default="local",
                    help="where the boards' consoles are exported from: this host (ptys), or "
                         "vm: the lab-host VM's FTDI adapters matched by udev (at most 2 boards)")
    lu.add_argument("--gic", type=virtual_lab.gic_list, default=virtual_lab.GICS, metavar="LIST",
                    help="the boards' GICs, board i the i-th, repeated as needed (default v2,v3: "
                         "virtual-0 GICv2, virtual-1 GICv3 without ITS); tagged gic=v2/v3")
    lu.add_argument("--listen", default=virtual_lab.LOOPBACK, metavar="ADDR",
                    help="serve the lab's clients on this address of this host (default "
                         "127.0.0.1: this host only). It exposes the coordinator (no "
                         "authentication), the boards' consoles through ser2net (no login), "
                         "the power switch (digest auth) and the lab's sshd (its key only) "
                         "to everyone who reaches ADDR")
    ld = lab_sub.add_parser("down", help="stop the virtual lab and remove what it made")
    le = lab_sub.add_parser("env", help="print the exports that reach the virtual lab")
    ls = lab_sub.add_parser("status", help="places, health, holders, leases, waiting reservations")
    lh = lab_sub.add_parser("health", help="health-check one place now and mark it")
    lh.add_argument("place")
    lj = lab_sub.add_parser("janitor", help="beside a coordinator: free expired leases, run due "
                                            "health checks")
    lj.add_argument("--interval", type=float, default=86400.0, metavar="S",
                    help="health-check interval (default a day, as LAVA)")
    lj.add_argument("--grace", type=float, default=30.0, metavar="S",
                    help="kick a place acquired without a lease after this long (default 30)")
    lj.add_argument("--max-checks", type=int, default=4, metavar="N",
                    help="health checks at once (default 4): each holds a place and boots it")
    lj.add_argument("--metrics", default=None, metavar="ADDR:PORT", type=_metrics_address,
                    help="serve Prometheus metrics on ADDR:PORT (for example 127.0.0.1:9464)")
    lj.add_argument("--watch", default=None, metavar="ADDR",
                    help="serve holders the place they hold on ADDR, so that they leave the "
                         "coordinator's stream (default: the coordinator's host; '' for none)")
    for p in (lh, lj):
        p.add_argument("--lg-env", default=str(REPO / "places" / "virtual-lab.yaml"),
                       help="environment whose RemotePlace is LG_PLACE (default: "
                            "places/virtual-lab.yaml)")
        p.add_argument("--results", default=None if p is lh else "results/health",
                       help="where the check runs keep their results")
    ls.add_argument("--metrics", default=None, metavar="URL",
                    help="the janitor's metrics (default HIL_LAB_METRICS, else the virtual lab's)")
    for p in (ls, lh, lj):
        p.add_argument("--coordinator", default=None,
                       help="HOST:PORT (default LG_COORDINATOR, else the virtual lab's)")
    lb = lab_sub.add_parser("bench", help="the scheduler under load on a loopback coordinator "
                                          "and exporter: hil's client beside labgrid-client")
    lb.add_argument("--places", type=int, nargs="+", default=[10, 50, 200], metavar="N")
    lb.add_argument("--hosts", type=int, default=2, metavar="H",
                    help="exporter hosts, each in a network namespace of its own (default 2)")
    lb.add_argument("--sessions", type=int, nargs="+", default=[5, 20, 50], metavar="M")
    lb.add_argument("--seconds", type=float, default=60.0,
                    help="length of each configuration's run (default 60)")
    lb.add_argument("--client", choices=("hil", "hil-own-stream", "labgrid-client"),
                    action="append",
                    help="only this client (default: hil and labgrid-client; hil-own-stream: "
                         "hil's holders each on its own stream, no janitor's place watch)")
    lb.add_argument("--work", default="/tmp/hil-lab-bench",
                    help="where the coordinators keep their state and logs")
    lb.add_argument("--no-initial-checks", action="store_true",
                    help="places start healthy (by default the janitor checks them all first)")
    lb.set_defaults(func=_lab_bench)
    for p, fn in ((lu, _lab_up), (ld, _lab_down), (le, _lab_env), (ls, _lab_status),
                  (lh, _lab_health), (lj, _lab_janitor)):
        p.add_argument("--dir", default=str(DEFAULT_DIR),
                       help=f"the lab's runtime directory (default {DEFAULT_DIR}, $HIL_LAB_DIR)")
        p.set_defaults(func=fn)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"hil: error: {e}", file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    except HilError as e:
        # The firmware build or the lab failed before any case ran: run again.
        print(f"hil: error: {e}", file=sys.stderr)
        return int(ExitCode.INCONCLUSIVE)


if __name__ == "__main__":
    sys.exit(main())
