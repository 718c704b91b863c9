"""The plugin's side of holding a place: `--hil-reserve` reserves and locks a healthy place
of the coordinator before anything else happens, keeps it, and releases it on every way out.

SIGTERM (a CI job cancelled) is turned into pytest's own interruption, so teardown runs and
the results so far are written; a lost place interrupts the run the same way (SIGUSR1),
from the lease's watch thread, and the verdict says why. SIGKILL cannot be caught: the lease
runs out and the lab's janitor frees the place.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from typing import Any

import pytest

from hil.preflight.places import DEFAULT_COORDINATOR
from hil.scheduling import health
from hil.scheduling.coordinator import split_identity
from hil.scheduling.reservations import Lost, PlaceReservation, lease_problem, parse_request

RESERVATION = pytest.StashKey["Held"]()
# What the watch thread interrupts the run with when the place is lost.
LOST_SIGNAL = signal.SIGUSR1


class Held:
    def __init__(self, reservation: PlaceReservation):
        self.reservation = reservation
        self.lost: Lost | None = None
        # Set when the run is ending anyway: a loss found then is recorded, not signalled.
        self.finishing = threading.Event()


def addoption(group: Any) -> None:
    group.addoption("--hil-reserve", nargs="+", metavar="TAG=VALUE", default=None,
                    help="reserve and lock a healthy place of the coordinator (LG_COORDINATOR) "
                         "matching these tags (name=PLACE for one place) before the run")
    group.addoption("--hil-priority", type=float, default=0.0,
                    help="the reservation's priority: higher goes first (default 0)")
    group.addoption("--hil-reserve-timeout", type=float, default=3600.0, metavar="S",
                    help="give up (inconclusive) after waiting this long for a place")
    group.addoption("--hil-lease", type=float, default=60.0, metavar="S",
                    help="the place is freed this long after this session stops renewing "
                         "its lease (killed, or its machine lost power)")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def check_options(config: pytest.Config) -> None:
    """The reservation's options, before anything waits: one usage error each."""
    if (why := lease_problem(config.getoption("hil_lease"))) is not None:
        raise pytest.UsageError(why)
    timeout = config.getoption("hil_reserve_timeout")
    if not math.isfinite(timeout) or timeout <= 0:
        raise pytest.UsageError(f"--hil-reserve-timeout {timeout:g}: give a number of "
                                "seconds above 0")
    if not math.isfinite(config.getoption("hil_priority")):
        raise pytest.UsageError("--hil-priority must be a finite number")


def reserve(config: pytest.Config) -> None:
    """Before the environment is checked: the environment's LG_PLACE is the place held."""
    words = config.getoption("hil_reserve")
    if not words:
        return
    try:
        filters = parse_request(words)
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    check_options(config)
    address = (config.getoption("lg_coordinator", None) or os.environ.get("LG_COORDINATOR")
               or DEFAULT_COORDINATOR)
    held: Held | None = None

    def lost(why: Lost) -> None:
        if held is not None:
            held.lost = why
            if held.finishing.is_set():
                return
        print(f"\nhil: {why}: stopping the run", file=sys.stderr, flush=True)
        # Our own signal, not SIGINT: a process started in the background by a
        # non-interactive shell (a CI job) inherits SIGINT ignored, and Python then has no
        # KeyboardInterrupt for it.
        os.kill(os.getpid(), LOST_SIGNAL)

    # Released on every way out from here: pass, failure, Ctrl-C, SIGTERM, an exception, and
    # a signal in the middle of acquire() (release() undoes what acquire() got done).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(LOST_SIGNAL, _raise_interrupt)
    res = PlaceReservation(address, filters,
                           prio=config.getoption("hil_priority"),
                           timeout=config.getoption("hil_reserve_timeout"),
                           lease=config.getoption("hil_lease"),
                           progress=lambda line: print(line, file=sys.stderr, flush=True),
                           on_loss=lost, purpose="pytest")
    config.add_cleanup(res.release)
    held = Held(res)
    config.stash[RESERVATION] = held
    # labgrid's RemotePlace in this run uses the place as this session's holder.
    os.environ["LG_HOSTNAME"], os.environ["LG_USERNAME"] = split_identity(res.holder)
    hold = res.acquire()
    os.environ["LG_PLACE"] = hold.place
    os.environ["LG_COORDINATOR"] = address


def held(config: pytest.Config) -> Held | None:
    return config.stash.get(RESERVATION, None)


def finishing(config: pytest.Config, infrastructure_failed: bool) -> None:
    """The run is ending: the watch may still record a loss, but no longer interrupts. Called
    when the lab fixture ends (before the board is switched off) and again when the session
    does."""
    h = held(config)
    if h is None:
        return
    if not h.finishing.is_set():
        h.finishing.set()
        h.reservation.stop_watching()
    if h.lost is None and infrastructure_failed:
        # A case may have failed on the loss before the watch saw it (a kicked place's
        # console goes first, a killed exporter's resources too): one more look names the
        # cause.
        h.lost = h.reservation.why_lost()


def after_run(config: pytest.Config, infrastructure_failed: bool, why: str) -> None:
    """An infrastructure error on a held place asks for a health check before its next use
    (a product failure never does)."""
    h = held(config)
    if h is None or not (infrastructure_failed or h.lost):
        return
    if h.lost and not h.lost.reason.lab_fault:
        return  # another client took the place: nothing wrong with it
    hold = h.reservation.hold
    if hold is None:
        return
    reason = str(h.lost or why)
    try:
        if h.reservation.place_now(hold.place).acquired != h.reservation.holder:
            # Kicked or released by another client: the errors were its doing, not the lab's.
            return
        health.mark(h.reservation.coordinator, hold.place, "unknown",
                    f"infrastructure error in a session: {reason}")
    except (Exception, KeyboardInterrupt) as e:  # the results matter more than the mark
        print(f"hil: could not mark {hold.place} for a health check: {e}", file=sys.stderr)
