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
    """What the server needs of the janitor's client: its loop, its listeners, its places."""
    connected = True
    connections = 1

    def __init__(self) -> None:
        self.listeners: list[object] = []
        self.places = {"p0": Place("p0", acquired="h/u"), "p1": Place("p1")}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def changed(self, names: list[str] | None) -> None:
        """An update, told to the listeners in the loop as the real client does."""
        for listener in self.listeners:
            self.loop.call_soon_threadsafe(listener.changed, names)  # type: ignore[attr-defined]

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
    coordinator.close()


def later(seconds: float, fn) -> None:  # type: ignore[no-untyped-def]
    threading.Timer(seconds, fn).start()


def test_a_long_poll_is_answered_by_its_own_places_change_not_by_anothers(served) -> None:
    coordinator, server = served
    view = RelayView(server.url, "p0")
    assert view.place("p0").acquired == "h/u" and view.connected and view.connections == 1
    token = view.generation
    later(0.3, lambda: coordinator.changed(["p1"]))
    later(0.6, lambda: coordinator.changed(["p0"]))
    t0 = time.monotonic()
    coordinator.places["p0"] = Place("p0")  # released meanwhile
    assert view.wait_for_change(token, 5.0) != token
    assert 0.5 < time.monotonic() - t0 < 3.0
    assert view.place("p0").acquired is None
    assert server.watches("p0") and not server.watches("p1")


def test_a_quiet_place_answers_when_the_wait_is_over_and_a_new_connection_wakes_everyone(
        served) -> None:
    coordinator, server = served
    view = RelayView(server.url, "p0")
    token = view.generation
    t0 = time.monotonic()
    assert view.wait_for_change(token, 0.4) == token
    assert time.monotonic() - t0 >= 0.35
    later(0.2, lambda: coordinator.changed(None))
    assert view.wait_for_change(token, 5.0) != token


def test_a_holder_that_lets_go_gets_its_last_look_at_once_and_a_missing_server_is_relay_gone(
        served) -> None:
    coordinator, server = served
    view = RelayView(server.url, "p0")
    token = view.generation

    def release_meanwhile() -> None:
        coordinator.places["p0"] = Place("p0")
        view.abort()

    later(0.3, release_meanwhile)
    t0 = time.monotonic()
    assert view.wait_for_change(token, 10.0) == token  # answered, not changed
    assert time.monotonic() - t0 < 3.0
    view.refresh()  # the release's look: that answer, not a request
    assert view.place("p0").acquired is None
    assert (server.requests, server.connections_opened) == (2, 1)
    with pytest.raises(RelayGone):  # no poll after letting go
        view.wait_for_change(token, 10.0)
    url = server.url
    server.close()
    with pytest.raises(RelayGone, match="place watch"):
        RelayView(url, "p0")
    with pytest.raises(RelayGone, match="is not http://HOST:PORT"):
        RelayView("file:///etc/passwd", "p0")


def test_a_holder_polls_on_one_kept_connection_and_looks_again_after_letting_go(
        served) -> None:
    coordinator, server = served
    view = RelayView(server.url, "p0")
    for _ in range(3):
        later(0.1, lambda: coordinator.changed(["p0"]))
        view.wait_for_change(view.generation, 5.0)
    assert (server.requests, server.connections_opened) == (4, 1)
    view.abort()  # between polls: the kept connection serves the release's look
    with pytest.raises(RelayGone):
        view.wait_for_change(view.generation, 10.0)
    view.refresh()
    assert view.place("p0").acquired == "h/u"
    assert (server.requests, server.connections_opened) == (5, 1)
    view.abort(hard=True)  # cut: a later look needs a connection of its own
    view.refresh()
    assert (server.requests, server.connections_opened) == (6, 2)
    view.close()


def test_an_unknown_place_and_a_wrong_path_are_said_so(served) -> None:
    _, server = served
    view = RelayView(server.url, "nope")
    with pytest.raises(CoordinatorError, match="not known to the janitor"):
        view.place("nope")
    assert server.answer("/metrics")[0] == 404  # type: ignore[index]
    assert server.answer("/v1/place/p0?wait=soon")[0] == 400  # type: ignore[index]


def test_a_request_that_comes_while_a_poll_waits_answers_the_poll_first(served) -> None:
    import socket

    _, server = served
    host, port = server.url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /v1/place/p0?after=0.0&wait=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.sendall(b"GET /v1/place/p1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert time.monotonic() - t0 < 3.0
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b'"name": "p0"') < data.index(b'"name": "p1"')


def test_a_holder_that_lets_go_says_done_and_its_connection_serves_the_next_hold(
        served) -> None:
    coordinator, server = served
    view = RelayView(server.url, "p0")
    token = view.generation
    later(0.3, view.abort)  # the release, from another thread, while the watch polls
    t0 = time.monotonic()
    assert view.wait_for_change(token, 10.0) == token
    assert time.monotonic() - t0 < 3.0
    view.refresh()  # that answer was the last look
    view.close(keep=True)  # the answer to `done` read, the connection kept
    assert (server.requests, server.dones, server.connections_opened) == (2, 1, 1)

    nxt = RelayView(server.url, "p1")  # the process's next hold: no new connection
    assert nxt.place("p1").acquired is None
    assert (server.requests, server.connections_opened) == (3, 1)
    later(0.2, lambda: coordinator.changed(["p1"]))
    assert nxt.wait_for_change(nxt.generation, 5.0) != ""
    nxt.abort()  # between polls: nothing to end, the release looks by a request
    nxt.refresh()
    nxt.close(keep=True)
    assert (server.requests, server.dones, server.connections_opened) == (5, 1, 1)
    last = RelayView(server.url, "p0")
    assert last.place("p0").acquired == "h/u"
    last.close()  # not kept: the next view opens its own
    RelayView(server.url, "p0").close()
    assert server.connections_opened == 2


def test_a_kept_connection_closed_by_the_janitor_while_idle_is_replaced(served, monkeypatch) -> None:
    _, server = served
    monkeypatch.setattr("hil.scheduling.placewatch.IDLE_S", 0.2)
    view = RelayView(server.url, "p0")
    token = view.generation
    later(0.2, view.abort)
    view.wait_for_change(token, 10.0)
    view.close(keep=True)  # after `done`: the server closes it when idle for IDLE_S
    time.sleep(0.6)
    assert not server.connections
    nxt = RelayView(server.url, "p0")  # the pooled connection fails; a new one answers
    assert nxt.place("p0").acquired == "h/u"
    assert server.connections_opened == 2
    nxt.close()


def test_done_answers_the_poll_in_progress_first_then_itself(served) -> None:
    import socket

    _, server = served
    host, port = server.url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /v1/place/p0?after=0.0&wait=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        s.sendall(b"GET /v1/done HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"{}"):
            data += s.recv(65536)
        assert time.monotonic() - t0 < 3.0
        assert data.count(b"HTTP/1.1 200 OK") == 2 and b'"name": "p0"' in data
        s.sendall(b"GET /v1/place/p1 HTTP/1.1\r\nHost: x\r\n\r\n")  # still open, and served
        assert b'"name": "p1"' in s.recv(65536)
    assert server.dones == 1
