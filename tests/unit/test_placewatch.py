"""The janitor's place watch as a server: a long poll answered by the place's own changes, not
by the rack's; and its client, the holder's view."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hil.scheduling.coordinator import CoordinatorError, Place
from hil.scheduling.placewatch import PlaceWatchServer, RelayGone, RelayView


class FakeCoordinator:
    connected = True
    connections = 1

    def __init__(self) -> None:
        self.listeners: list[object] = []
        self.places = {"p0": Place("p0", acquired="h/u"), "p1": Place("p1")}

    def add_listener(self, listener: object) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: object) -> None:
        self.listeners.remove(listener)

    def place(self, name: str) -> Place:
        if name not in self.places:
            raise CoordinatorError(f"place {name} does not exist")
        return self.places[name]


@pytest.fixture
def served():
    coordinator = FakeCoordinator()
    server = PlaceWatchServer(coordinator)  # type: ignore[arg-type]
    yield coordinator, server
    server.close()


def later(seconds: float, fn) -> None:  # type: ignore[no-untyped-def]
    threading.Timer(seconds, fn).start()


def test_a_long_poll_is_answered_by_its_own_places_change_not_by_anothers(served) -> None:
    coordinator, server = served
    view = RelayView(server.url, "p0")
    assert view.place("p0").acquired == "h/u" and view.connected and view.connections == 1
    token = view.generation
    later(0.3, lambda: server.changed(["p1"]))
    later(0.6, lambda: server.changed(["p0"]))
    t0 = time.monotonic()
    coordinator.places["p0"] = Place("p0")  # released meanwhile
    assert view.wait_for_change(token, 5.0) != token
    assert 0.5 < time.monotonic() - t0 < 3.0
    assert view.place("p0").acquired is None
    assert server.watches("p0") and not server.watches("p1")


def test_a_quiet_place_answers_when_the_wait_is_over_and_a_new_connection_wakes_everyone(
        served) -> None:
    _, server = served
    view = RelayView(server.url, "p0")
    token = view.generation
    t0 = time.monotonic()
    assert view.wait_for_change(token, 0.4) == token
    assert time.monotonic() - t0 >= 0.35
    later(0.2, lambda: server.changed(None))
    assert view.wait_for_change(token, 5.0) != token


def test_a_holder_that_lets_go_ends_its_poll_and_a_missing_server_is_relay_gone(served) -> None:
    _, server = served
    view = RelayView(server.url, "p0")
    later(0.3, view.abort)
    t0 = time.monotonic()
    with pytest.raises(RelayGone):
        view.wait_for_change(view.generation, 10.0)
    assert time.monotonic() - t0 < 3.0
    url = server.url
    server.close()
    with pytest.raises(RelayGone, match="place watch"):
        RelayView(url, "p0")
    with pytest.raises(RelayGone, match="is not http://HOST:PORT"):
        RelayView("file:///etc/passwd", "p0")


def test_a_holder_polls_on_one_kept_connection_and_looks_again_after_letting_go(
        served) -> None:
    _, server = served
    view = RelayView(server.url, "p0")
    for _ in range(3):
        later(0.1, lambda: server.changed(["p0"]))
        view.wait_for_change(view.generation, 5.0)
    assert (server.requests, server.connections_opened) == (4, 1)
    later(0.2, view.abort)
    with pytest.raises(RelayGone):
        view.wait_for_change(view.generation, 10.0)
    view.refresh()  # a release's last look, on a new connection
    assert view.place("p0").acquired == "h/u"
    assert (server.requests, server.connections_opened) == (6, 2)
    view.close()


def test_an_unknown_place_and_a_wrong_path_are_said_so(served) -> None:
    _, server = served
    view = RelayView(server.url, "nope")
    with pytest.raises(CoordinatorError, match="not known to the janitor"):
        view.place("nope")
    assert asyncio.run(server.answer("/metrics"))[0] == 404
    assert asyncio.run(server.answer("/v1/place/p0?wait=soon"))[0] == 400
