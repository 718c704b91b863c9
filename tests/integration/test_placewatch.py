"""A holder follows its place through the janitor's place watch (hil.scheduling.placewatch)
on labgrid's own coordinator and exporter on loopback: it leaves the coordinator's stream,
which sends every client the whole rack's updates, and still notices every loss; when the
janitor goes, it goes back to its own stream. (After a coordinator restart:
test_coordinator.py's restart test.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.scheduling.coordinator import Coordinator
from hil.scheduling.janitor import Janitor
from hil.scheduling.loopback import LoopbackLab
from hil.scheduling.placewatch import WATCH_TAG
from hil.scheduling.reservations import Loss, Lost, PlaceReservation


def wait_for(what: str, cond, timeout: float = 20.0, said: list[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, \
            f"not within {timeout:g} s ({time.monotonic():.1f}): {what}: {said or ''}"
        time.sleep(0.05)


class _Lab:
    def __init__(self, lab: LoopbackLab, janitor: Janitor):
        self.lab = lab
        self.janitor = janitor
        self.address = lab.address


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[_Lab]:
    with LoopbackLab(tmp_path / "lab", places=2) as loop:
        janitor = Janitor(Coordinator(loop.address, purpose="janitor", eager=True), Path("unused.yaml"),
                          tmp_path / "health", interval=1e9, out=lambda _: None,
                          watch_address="127.0.0.1")
        threading.Thread(target=janitor.run, daemon=True).start()
        assert janitor.watch is not None
        with Coordinator(loop.address, purpose="look") as c:
            wait_for("the janitor to name its place watch on every place",
                     lambda: all(p.tags.get(WATCH_TAG) == janitor.watch.url  # type: ignore[union-attr]
                                 for p in c.places()))
        try:
            yield _Lab(loop, janitor)
        finally:
            janitor.close()


def session(lab: _Lab, name: str = "place-0", **kw) -> PlaceReservation:
    losses: list[Lost] = []
    said: list[str] = []
    r = PlaceReservation(lab.address, {"name": name}, timeout=kw.pop("timeout", 30),
                         lease=kw.pop("lease", 12),
                         progress=lambda m: said.append(f"{time.monotonic():.1f} {m}"),
                         on_loss=losses.append, **kw)
    r.losses = losses  # type: ignore[attr-defined]
    r.said = said  # type: ignore[attr-defined]
    return r


def test_a_holder_leaves_the_stream_hears_nothing_of_other_places_and_notices_a_kick(
        lab) -> None:
    holder = session(lab)
    holder.acquire()
    try:
        assert holder.relayed and holder.coordinator.detached
        before = holder.coordinator.generation
        with Coordinator(lab.address, purpose="other") as other:
            for i in range(5):  # the rack's other updates reach the holder no more
                other.set_tags("place-1", {"note": str(i)})
            wait_for("the updates to reach a streaming client",
                     lambda: other.place("place-1").tags.get("note") == "4")
            time.sleep(0.5)
            assert holder.coordinator.generation == before
            assert not holder.losses
            # Its lease is renewed by unary calls alone.
            lease = other.place("place-0").tags["hil-lease"]
            holder._renew()
            wait_for("the renewed lease", lambda: other.place("place-0").tags["hil-lease"]
                     != lease)
            other.release("place-0", only_from=holder.holder)  # a kick
            wait_for("the holder notices", lambda: holder.losses)
        assert holder.losses[0].reason is Loss.RELEASED
        assert holder.why_lost() is not None
    finally:
        holder.release()
    with Coordinator(lab.address, purpose="look") as c:
        place = c.place("place-0")
        assert place.acquired is None and "hil-lease" not in place.tags


def test_one_processs_successive_holds_follow_their_places_on_one_connection(lab) -> None:
    for name in ("place-0", "place-1", "place-0"):
        holder = session(lab, name)
        holder.acquire()
        assert holder.relayed
        time.sleep(0.3)  # its watch waits in a poll: the release ends it by `done`
        holder.release()
        assert not holder.losses
    watch = lab.janitor.watch
    assert watch is not None
    assert watch.connections_opened == 1 and 1 <= watch.dones <= 3
    with Coordinator(lab.address, purpose="look") as c:
        for place in c.places():
            assert place.acquired is None and "hil-lease" not in place.tags


def test_a_relayed_holder_notices_that_its_exporter_went_away(lab) -> None:
    holder = session(lab)
    holder.acquire()
    try:
        assert holder.relayed
        lab.lab.stop_exporter(0)
        wait_for("the holder notices", lambda: holder.losses, timeout=30)
        assert holder.losses[0].reason is Loss.RESOURCES_GONE
    finally:
        holder.release()


def test_when_the_janitor_goes_a_holder_takes_its_own_stream_again_and_still_notices_a_kick(
        lab) -> None:
    holder = session(lab)
    holder.acquire()
    try:
        assert holder.coordinator.detached
        lab.janitor.close()
        wait_for("the holder back on its own stream", lambda: not holder.coordinator.detached)
        wait_for("connected", lambda: holder.coordinator.connected)
        assert not holder.losses
        with Coordinator(lab.address, purpose="admin") as admin:
            admin.release("place-0", only_from=holder.holder)
        wait_for("the holder notices", lambda: holder.losses)
        assert holder.losses[0].reason is Loss.RELEASED
    finally:
        holder.release()
