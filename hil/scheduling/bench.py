"""`hil lab bench`: the lab's scheduling under load, on labgrid's own coordinator and exporter
on loopback (hil.scheduling.loopback), with no boards.

N places whose resources need no device; M concurrent sessions, each a holder of its own,
reserve `board=loop` with mixed priorities (0, 5, 10), hold the place 1-5 s (random) and
release it, again and again for the run's length. The janitor runs as in a lab, with a cheap
stand-in for the health check (it reserves the place at the check's priority, holds it
0.2 s and marks it good), and checks every place once at the start. The same workload is run
through labgrid's own command (`labgrid-client reserve --wait`, then `acquire`, `release`,
`cancel-reservation`) as the anchor, in the same run.

What it prints, per client:
- grant latency p50/p95/p99: from reserving to holding, less the time during which no place
  was free (sampled every 50 ms from the coordinator's stream);
- board-seconds idle while someone waited (free places x time, while a session waited);
- double holds (two sessions' holds of one place overlapping: must be 0) and leaks at the
  end (places still acquired, lease tags, reservations: must be 0);
- CPU seconds per minute of the janitor (a process of its own, as in a lab:
  hil.scheduling.bench_janitor), of the sessions' clients (and apart, the part spent watching
  a held place: the client's stream and the watch thread while holding), and of the
  coordinator process; memory (RSS) of the bench process, the janitor and the coordinator.

The statistics are pure functions (`percentile`, `blocked_time`, `double_holds`) tested on
their own.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labgrid.util import Timeout

from hil.measure import procstat
from hil.scheduling.coordinator import Coordinator
from hil.scheduling.loopback import LoopbackLab
from hil.scheduling.placewatch import WATCH_TAG
from hil.scheduling.reservations import HOLDER_TAG, LEASE_TAG, PlaceReservation, ReservationTimeout

PRIOS = (0.0, 5.0, 10.0)
HOLD_S = (1.0, 5.0)
SAMPLE_S = 0.05


# --- the statistics: pure -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks; nan for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def blocked_time(samples: Sequence[tuple[float, int]], start: float, end: float) -> float:
    """Seconds within [start, end] during which no place was free, from (time, free places)
    samples in time order (each holds until the next)."""
    if end <= start or not samples:
        return 0.0
    times = [t for t, _ in samples]
    i = max(0, bisect.bisect_right(times, start) - 1)
    blocked = 0.0
    while i < len(samples) and samples[i][0] < end:
        t0 = max(samples[i][0], start)
        t1 = min(samples[i + 1][0] if i + 1 < len(samples) else end, end)
        if samples[i][1] == 0 and t1 > t0:
            blocked += t1 - t0
        i += 1
    return blocked


@dataclass(frozen=True)
class HoldRecord:
    session: int
    place: str
    requested: float
    granted: float
    released: float  # when the holder let go (before its release call)
    relayed: bool = False  # its watch followed the place through the janitor's place watch


def double_holds(holds: Sequence[HoldRecord]) -> int:
    """Pairs of holds of one place by two sessions that overlap in time."""
    found = 0
    by_place: dict[str, list[HoldRecord]] = {}
    for h in holds:
        by_place.setdefault(h.place, []).append(h)
    for hs in by_place.values():
        hs.sort(key=lambda h: h.granted)
        for a, b in itertools.pairwise(hs):
            if b.granted < a.released and a.session != b.session:
                found += 1
    return found


@dataclass
class Result:
    client: str
    places: int
    sessions: int
    seconds: float
    holds: list[HoldRecord] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, free, waiting
    failures: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # what -> CPU s over the run
    rss_mb: dict[str, float] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    watch_served: dict[str, int] = field(default_factory=dict)  # the janitor's place watch
    lone: dict[str, float] = field(default_factory=dict)  # the session in its own process

    def latencies(self) -> list[float]:
        free = [(t, n) for t, n, _ in self.samples]
        return [max(0.0, h.granted - h.requested - blocked_time(free, h.requested, h.granted))
                for h in self.holds]

    def idle_while_waiting(self) -> float:
        idle = 0.0
        for (t, free, waiting), (t1, _, _) in itertools.pairwise(self.samples):
            if waiting:
                idle += free * (t1 - t)
        return idle

    def row(self) -> list[str]:
        lat = self.latencies()
        per_min = 60.0 / self.seconds
        relayed = sum(h.relayed for h in self.holds)
        return [self.client, str(self.places), str(self.sessions),
                f"{len(self.holds)}/{relayed}",
                f"{percentile(lat, 50):.3f}", f"{percentile(lat, 95):.3f}",
                f"{percentile(lat, 99):.3f}", f"{self.idle_while_waiting():.1f}",
                str(double_holds(self.holds)), str(len(self.leaks)),
                f"{self.cpu.get('janitor', 0) * per_min:.2f}",
                f"{self.cpu.get('sessions', 0) * per_min:.2f}",
                (f"{self.cpu['watches'] * per_min:.2f} "
                 f"({self.cpu.get('watch_threads', 0) * per_min:.2f})")
                if "watches" in self.cpu else "-",
                f"{self.cpu.get('process', 0) * per_min:.2f}",
                f"{self.cpu.get('coordinator', 0) * per_min:.2f}",
                f"{self.rss_mb.get('bench', 0):.0f}/{self.rss_mb.get('janitor', 0):.0f}/"
                f"{self.rss_mb.get('coordinator', 0):.0f}"]


HEADER = ["client", "N", "M", "holds/relayed", "grant p50 s", "p95 s", "p99 s", "idle board-s",
          "double", "leaks", "janitor cpu-s/min", "sessions cpu-s/min", "of it holding (watch threads)",
          "bench process cpu-s/min", "coordinator cpu-s/min",
          "RSS MB bench/janitor/coord"]


def table(results: Sequence[Result]) -> str:
    rows = [HEADER, *(r.row() for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)


# --- the run ------------------------------------------------------------------------------------


def _module_env() -> dict[str, str]:
    """For `python -m hil.scheduling...`: this checkout first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}


def _rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _own_cpu() -> float:
    """Every thread of this process: the sessions, the sampler, and gRPC's own threads,
    which no per-client figure counts (the janitor runs in a process of its own)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Workload:
    """The sessions' loop: reserve, hold 1-5 s, release, until `stop_at`."""

    def __init__(self, address: str, sessions: int, seconds: float, seed: int):
        self.address = address
        self.sessions = sessions
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.holds: list[HoldRecord] = []
        self.failures: list[str] = []
        self.waiting = 0
        self.session_cpu = 0.0
        self.watch_cpu = 0.0  # the part of session_cpu spent holding: stream and watch thread
        self.watch_thread_cpu = 0.0  # of it, the watch threads alone
        self.stop_at = 0.0

    def _wait_begin(self) -> None:
        with self.lock:
            self.waiting += 1

    def _wait_end(self) -> None:
        with self.lock:
            self.waiting -= 1

    def hil_session(self, i: int) -> None:
        rng = random.Random(self.rng.random())
        while time.monotonic() < self.stop_at:
            prio = rng.choice(PRIOS)
            r = PlaceReservation(self.address, {"board": "loop"}, prio=prio,
                                 timeout=max(1.0, self.stop_at - time.monotonic() + 5),
                                 lease=60, progress=lambda _: None, purpose=f"bench-{i}")
            t0 = time.monotonic()
            self._wait_begin()
            try:
                hold = r.acquire()
            except Exception as e:
                self._wait_end()
                if not (isinstance(e, ReservationTimeout) and time.monotonic() >= self.stop_at):
                    self.failures.append(f"session {i}: {e}")  # not the run's end
                r.release()
                continue
            self._wait_end()
            granted = time.monotonic()
            held_from = r.coordinator.cpu_seconds()
            time.sleep(rng.uniform(*HOLD_S))
            let_go = time.monotonic()
            held = r.coordinator.cpu_seconds() - held_from
            r.release()
            with self.lock:
                self.holds.append(HoldRecord(i, hold.place, t0, granted, let_go, r.relayed))
                self.session_cpu += r.coordinator.cpu_seconds() + r.watch_cpu_s
                self.watch_cpu += held + r.watch_cpu_s
                self.watch_thread_cpu += r.watch_cpu_s

    def labgrid_session(self, i: int) -> None:
        rng = random.Random(self.rng.random())
        client = str(Path(sys.executable).parent / "labgrid-client")
        env = {**os.environ, "LG_USERNAME": f"anchor{i}"}
        base = [client, "-x", self.address]
        while time.monotonic() < self.stop_at:
            prio = rng.choice(PRIOS)
            t0 = time.monotonic()
            self._wait_begin()
            q = subprocess.run([*base, "reserve", "--wait", "--shell", "--prio", str(prio),
                                "board=loop", "health=good"], capture_output=True, text=True,
                               env=env, timeout=600)
            token = next((w.split("=", 1)[1] for w in q.stdout.split()
                          if w.startswith("LG_TOKEN=")), None)
            tenv = {**env, "LG_TOKEN": token or ""}
            a = subprocess.run([*base, "-p", "+", "acquire"], capture_output=True, text=True,
                               env=tenv, timeout=120)
            self._wait_end()
            if q.returncode or token is None or a.returncode:
                self.failures.append(f"anchor {i}: {q.stderr.strip()[-200:]} "
                                     f"{a.stderr.strip()[-200:]}")
                if token:
                    subprocess.run([*base, "cancel-reservation", token], capture_output=True,
                                   env=env, timeout=60)
                continue
            granted = time.monotonic()
            shown = subprocess.run([*base, "-p", "+", "show"], capture_output=True, text=True,
                                   env=tenv, timeout=60).stdout
            place = shown.split("'", 2)[1] if shown.startswith("Place '") else "?"
            time.sleep(rng.uniform(*HOLD_S))
            let_go = time.monotonic()
            subprocess.run([*base, "-p", "+", "release"], capture_output=True, env=tenv,
                           timeout=60)
            subprocess.run([*base, "cancel-reservation", token], capture_output=True, env=env,
                           timeout=60)
            with self.lock:
                self.holds.append(HoldRecord(i, place, t0, granted, let_go))


def run_one(client: str, places: int, sessions: int, seconds: float, work: Path,
            seed: int = 1, initial_checks: bool = True, hosts: int = 2) -> Result:
    """One configuration on a fresh loopback lab (`initial_checks`: every place starts
    unchecked and the janitor checks them all at once, as after `hil lab up`; otherwise they
    start healthy, as in a lab that has run for a while)."""
    result = Result(client, places, sessions, seconds)
    directory = work / f"{client}-{places}-{sessions}"
    shutil.rmtree(directory, ignore_errors=True)  # a coordinator would load its old places
    lab = LoopbackLab(directory, places,
                      tags={"health": "unknown", "health-checked": ""} if initial_checks else {},
                      hosts=min(hosts, places))
    lab.start()
    janitor: subprocess.Popen[str] | None = None
    lone: subprocess.Popen[str] | None = None
    sampler: Coordinator | None = None
    run = Workload(lab.address, sessions, seconds, seed)
    try:  # whatever fails from here, the lab and its processes end with the run
        # hil's holders follow their place through the janitor (hil.scheduling.placewatch);
        # "hil-own-stream" is the same client with no such service, each holder on its own
        # stream.
        janitor = subprocess.Popen(
            [sys.executable, "-m", "hil.scheduling.bench_janitor", lab.address,
             str(work / "health"), "own-stream" if client == "hil-own-stream" else "watch"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_module_env())
        sampler = Coordinator(lab.address, purpose="bench-sampler")
        assert janitor.stdout is not None and janitor.stdin is not None
        started = janitor.stdout.readline()
        if not started:
            raise RuntimeError(f"the bench's janitor ended at its start (exit {janitor.wait()}):"
                               " its error is above")
        watch_url = json.loads(started)["watch"]
        if watch_url:
            # As in a lab whose janitor ran before anyone came: every place names its watch.
            deadline = Timeout(60.0)
            while not all(p.tags.get(WATCH_TAG) == watch_url
                          for p in sampler.places()) and not deadline.expired:
                time.sleep(0.2)
        janitor_cpu0 = procstat.cpu_seconds(f"/proc/{janitor.pid}/stat")
        coordinator_pid = lab.pids()["coordinator"]
        coordinator_cpu0 = procstat.cpu_seconds(f"/proc/{coordinator_pid}/stat")
        # labgrid-client's processes, reaped: their CPU is what the anchor's sessions cost.
        children0 = _children_cpu()
        own0 = _own_cpu()
        run.stop_at = time.monotonic() + seconds
        target = run.labgrid_session if client == "labgrid-client" else run.hil_session
        if client != "labgrid-client" and sessions >= 2:
            # One of the M in a process of its own, as a pytest run: what a session costs.
            lone = subprocess.Popen(
                [sys.executable, "-m", "hil.scheduling.bench_session", lab.address,
                 repr(run.stop_at), str(seed + 1000)],
                stdout=subprocess.PIPE, text=True, env=_module_env())
        workers = [threading.Thread(target=target, args=(i,), daemon=True)
                   for i in range(sessions - (lone is not None))]
        for w in workers:
            w.start()
        while time.monotonic() < run.stop_at:
            free = sum(1 for p in sampler.places()
                       if p.acquired is None and p.tags.get("health") == "good")
            result.samples.append((time.monotonic(), free, run.waiting))
            time.sleep(SAMPLE_S)
        janitor_cpu = procstat.cpu_seconds(f"/proc/{janitor.pid}/stat")
        janitor_rss = _rss_mb(janitor.pid)
        for w in workers:
            w.join(120)
        if lone is not None:
            printed = (lone.communicate(timeout=120)[0] or "").strip().splitlines()
            if not printed:
                run.failures.append(f"the session in a process of its own ended with exit "
                                    f"{lone.returncode} and no figures: its error is above")
            else:
                said = json.loads(printed[-1])
                run.holds += [HoldRecord(**{**h, "session": sessions - 1})
                              for h in said["holds"]]
                run.failures += said["failures"]
                result.lone = {k: said[k] for k in ("process_cpu", "holding_cpu",
                                                     "watch_thread_cpu")}
                result.lone["holds"] = len(said["holds"])
        # The lone session's process, reaped, is in the children's CPU.
        sessions_cpu = run.session_cpu + (_children_cpu() - children0)
        result.cpu = {"janitor": janitor_cpu - janitor_cpu0, "sessions": sessions_cpu,
                      "process": _own_cpu() - own0,
                      "coordinator": procstat.cpu_seconds(f"/proc/{coordinator_pid}/stat")
                      - coordinator_cpu0}
        if client != "labgrid-client":  # which keeps no watch on what it holds
            result.cpu["watches"] = run.watch_cpu
            result.cpu["watch_threads"] = run.watch_thread_cpu
        result.rss_mb = {"bench": _rss_mb(), "coordinator": _rss_mb(coordinator_pid),
                         "janitor": janitor_rss}
        janitor.stdin.close()
        served = janitor.stdout.readline()
        janitor.wait(15)
        if served:
            result.watch_served = json.loads(served)
        time.sleep(0.5)
        for p in sampler.places():
            if p.acquired is not None:
                result.leaks.append(f"{p.name} acquired by {p.acquired}")
            if p.tags.get(LEASE_TAG) or p.tags.get(HOLDER_TAG):
                result.leaks.append(f"{p.name} keeps a lease tag")
        result.leaks += [f"reservation {r.token} of {r.owner} ({r.state})"
                         for r in sampler.reservations()
                         if r.state in ("waiting", "allocated", "acquired")]
    finally:
        if sampler is not None:
            sampler.close()
        for proc in (lone, janitor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        lab.stop()
    result.holds = run.holds
    result.failures = run.failures
    return result


def main(places: Sequence[int], sessions: Sequence[int], seconds: float, work: Path,
         clients: Sequence[str] = ("hil", "labgrid-client"),
         out: Callable[[str], None] = print, initial_checks: bool = True,
         hosts: int = 2) -> list[Result]:
    """Every configuration, the places served by `hosts` exporters (each in a network
    namespace of its own, as a rack's lab hosts)."""
    results = []
    for n in places:
        for m in sessions:
            for client in clients:
                r = run_one(client, n, m, seconds, work, initial_checks=initial_checks,
                            hosts=hosts)
                results.append(r)
                out(table([r]).splitlines()[1])
                if held := r.lone.get("holds"):
                    out(f"  a session in a process of its own: {held:.0f} holds, "
                        f"{r.lone['process_cpu'] / held * 1e3:.1f} ms of CPU a hold, "
                        f"{r.lone['holding_cpu'] / held * 1e3:.1f} of it holding "
                        f"({r.lone['watch_thread_cpu'] / held * 1e3:.1f} in its watch thread)")
                if r.watch_served.get("requests") and r.holds:
                    out(f"  place watch: {r.watch_served['requests']} polls on "
                        f"{r.watch_served['connections']} connections, "
                        f"{r.watch_served['requests'] / len(r.holds):.1f} polls a hold")
                if r.holds and "place updates" in r.watch_served:
                    per = len(r.holds)
                    out(f"  the janitor's stream: {r.watch_served['place updates'] / per:.1f} "
                        f"place and {r.watch_served['resource updates'] / per:.1f} resource "
                        f"updates a hold, {r.cpu.get('janitor', 0) / per * 1e3:.2f} ms of its "
                        "CPU a hold")
                for f in r.failures[:3]:
                    out(f"  failure: {f}")
                for leak in r.leaks[:3]:
                    out(f"  leak: {leak}")
    out("")
    out(table(results))
    return results
