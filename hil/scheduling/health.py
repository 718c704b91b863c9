"""Health checks of a lab's places, as LAVA has them.

A health check is a short run of the board cases (testcases/test_board.py) on one place: a
power cycle, the console, a boot to the board shell through the place's own boot path (U-Boot
and TFTP, or the SD card), `/dev/kvm` with the vgic of its GIC and its maintenance interrupt, vhost-net.
Its outcome is kept on the coordinator, where every client and scheduler sees it: the place's
tag `health` (good, bad or unknown), `health-checked` (Unix seconds) and its comment (the
reason). Sessions reserve `health=good` places only (hil.scheduling.reservations).

A check runs when a place's health is unknown (first use; after an infrastructure error in a
session, which sets unknown; after a lease expired), and at the lab's interval. A failed
testcase in a session never marks a place: only a check does.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hil.scheduling.coordinator import Coordinator, Place, split_identity
from hil.scheduling.reservations import HEALTH_TAG, PlaceReservation

CHECKED_TAG = "health-checked"
REPO = Path(__file__).resolve().parents[2]
CHECK_CASES = ["testcases/test_board.py"]
# Ahead of any session: LAVA runs health checks before other jobs.
CHECK_PRIO = 100.0


def needs_check(place: Place, now: float, interval: float) -> bool:
    if place.acquired is not None:
        return False  # in use: checked when it comes back
    health = place.tags.get(HEALTH_TAG, "unknown")
    if health not in ("good", "bad"):
        return True
    try:
        checked = float(place.tags.get(CHECKED_TAG, "0"))
    except ValueError:
        return True
    return now - checked >= interval


def available(place: Place) -> frozenset[str]:
    """The place's resources that their exporters publish as available."""
    return frozenset(name for name, avail in place.resources.items() if avail)


def resources_missing(place: Place, seen: frozenset[str]) -> bool:
    """Some of the resources the place had available (`seen`) are gone from the coordinator
    (their exporter is restarting or its lab host is down) or no longer available (an
    exporter keeps publishing a USB serial adapter that was unplugged). A check now would fail
    on that alone and mark a good board bad until the next interval."""
    return not seen <= available(place)


def outcome(returncode: int, verdict: Mapping[str, object] | None) -> tuple[str, str]:
    """(health, reason) from the check run's exit code and its verdict.json."""
    if returncode == 0:
        return "good", "health check passed"
    what = ""
    if verdict:
        failures = verdict.get("failures") or {}
        if isinstance(failures, Mapping) and failures:
            case, message = next(iter(failures.items()))
            what = f": {case.rsplit('::', 1)[-1]}: {str(message).splitlines()[0][:200]}"
        elif verdict.get("verdict"):
            what = f": {verdict['verdict']}"
    return "bad", f"health check failed (exit {returncode}){what}"


def mark(coordinator: Coordinator, place: str, health: str, reason: str,
         now: float | None = None) -> None:
    tags = {HEALTH_TAG: health}
    if health != "unknown":
        tags[CHECKED_TAG] = f"{now if now is not None else time.time():.0f}"
    coordinator.set_tags(place, tags)
    coordinator.set_comment(place, f"health {health}: {reason}")


def run_check(coordinator: str, place: str, env_file: Path, results: Path,
              environ: Mapping[str, str] = os.environ, timeout: float = 600,
              progress: Callable[[str], None] = print) -> tuple[str, str]:
    """Check `place` now (waiting for it if it is held) and mark it; returns (health, reason).
    The check is a holder of its own at the coordinator at `coordinator` (HOST:PORT), never
    taken for a session of the same user."""
    t0 = time.monotonic()
    reservation = PlaceReservation(coordinator, {"name": place}, prio=CHECK_PRIO,
                                   timeout=timeout, lease=120, healthy_only=False,
                                   progress=progress, purpose=f"health-{place}")
    with reservation:
        host, user = split_identity(reservation.holder)
        q = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lg-env", str(env_file),
             "--hil-results", str(results), *CHECK_CASES],
            cwd=REPO, capture_output=True, text=True, timeout=timeout,
            # labgrid's RemotePlace in the check's pytest uses the place as this holder.
            env={**environ, "LG_COORDINATOR": coordinator, "LG_PLACE": place,
                 "LG_HOSTNAME": host, "LG_USERNAME": user})
        verdict = None
        with contextlib.suppress(OSError, ValueError):  # a run that ended before its verdict
            verdict = json.loads((results / "verdict.json").read_text())
        health, reason = outcome(q.returncode, verdict)
        mark(reservation.coordinator, place, health,
             f"{reason} ({time.monotonic() - t0:.0f} s, {results})")
    progress(f"health: {place}: {health}: {reason}")
    return health, reason
