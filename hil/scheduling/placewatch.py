"""A holder's watch on its one place, served by the lab's janitor.

labgrid's coordinator sends every update of the rack to every client (its Subscribe has only
`all_places` and `all_resources`), so M holders that each kept a stream would decode M times
the rack's updates: at 50 holders and 200 places that was a quarter of a core, against the
janitor's 3 %. The janitor already receives the stream once. It serves each holder the one
place it holds, as an HTTP long poll (`PlaceWatchServer`); a holder that reaches it stops its
own stream (`Coordinator.detach`) and writes its lease and release by unary calls alone. A
holder that cannot reach it keeps its own stream, as before: the relay makes holding cheaper,
never different.

The janitor names its server in every place's `hil-watch` tag. What it serves is what the
coordinator serves anyone (labgrid's coordinator has no authentication either).

    GET /v1/place/NAME?after=TOKEN&wait=SECONDS
    -> {"token": ..., "connected": ..., "connections": ..., "place": {Place} | null}
    GET /v1/done
    -> {}

It answers as soon as the place or one of its resources changed after TOKEN, or when the
janitor's client (re)connects, or after SECONDS (at most MAX_WAIT_S), or when the next request
comes or the holder stops sending. A holder that lets go sends `done`: the poll in progress
is answered first, and that answer is its release's last look. The connection then waits,
idle, for the holder process's next hold (`RelayView` keeps it in a pool): accepting and
closing a connection for each hold was about a tenth of the janitor's CPU in a busy rack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from hil.scheduling.coordinator import Coordinator, CoordinatorError, Place

WATCH_TAG = "hil-watch"
MAX_WAIT_S = 25.0
# A place nobody has asked about for this long is no longer matched against resource updates.
FORGET_S = 90.0
PATH = "/v1/place/"
DONE_PATH = "/v1/done"
# A kept connection that says nothing this long after `done` is closed by the server; the
# holder's pool forgets it sooner, so that it is not taken just as the server closes it.
IDLE_S = 120.0
POOL_IDLE_S = 60.0
POOL_MAX = 64  # idle connections kept per janitor, in one holder process
MAX_REQUEST = 8192  # a GET of this protocol is a few hundred bytes
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}
_PLACE_FIELDS = tuple(f.name for f in fields(Place))


def _fields(place: Place) -> dict[str, Any]:
    """Place as JSON's objects: its fields are strings, dicts of them and of bools (not
    dataclasses.asdict, whose deep copy was most of an answer's cost)."""
    return {f: getattr(place, f) for f in _PLACE_FIELDS}


@dataclass
class _Wait:
    """A poll that waits for its place's next change."""
    name: str
    after: str
    seconds: float


class _Connection(asyncio.Protocol):
    """One holder's kept connection: HTTP/1.1 GETs, one after another.

    A request that arrives while a poll waits answers that poll at once, and so does the
    end of the holder's sending side (`RelayView.abort` shuts it): a holder that lets go
    gets the place as it is now, as the last look of its release, on the same connection."""

    def __init__(self, server: PlaceWatchServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiting: _Wait | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.close_after = False  # the waiting poll said Connection: close
        self.ended = False
        self.idle_timer: asyncio.TimerHandle | None = None  # after `done`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections_opened += 1
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.waiting is not None:
            self.answer_now()  # which then takes the new request
        else:
            self.next_request()

    def eof_received(self) -> bool:
        self.ended = True
        if self.waiting is not None:
            self.answer_now()
        if self.transport is not None:
            self.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.stop_waiting()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.server.connections.discard(self)

    def next_request(self) -> None:
        while self.waiting is None and self.transport is not None \
                and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_REQUEST:
                    self.respond(400, {"error": "request too long"}, close=True)
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            lines = head.split(b"\r\n")
            close = any(n.strip().lower() == b"connection" and b"close" in v.lower()
                        for n, _, v in (line.partition(b":") for line in lines[1:]))
            parts = lines[0].split()
            if len(parts) != 3:
                self.respond(400, {"error": "not an HTTP request"}, close=True)
            elif parts[0] != b"GET":
                self.respond(405, {"error": "GET only"}, close=close)
            elif parts[1] == DONE_PATH.encode():
                self.server.dones += 1
                self.respond(200, b"{}", close=close)
                if self.transport is not None and not self.transport.is_closing():
                    self.idle_timer = asyncio.get_running_loop().call_later(
                        IDLE_S, self.transport.close)
            else:
                answer = self.server.answer(parts[1].decode("latin-1"))
                if isinstance(answer, _Wait):
                    self.close_after = close
                    self.wait(answer)
                else:
                    self.respond(*answer, close=close)

    def wait(self, w: _Wait) -> None:
        server = self.server
        if self.ended or w.seconds <= 0 or server.token(w.name) != w.after:
            self.respond(200, server.look(w.name), close=self.close_after)
            return
        self.waiting = w
        server.waiting.setdefault(w.name, set()).add(self)
        self.timer = asyncio.get_running_loop().call_later(w.seconds, self.answer_now)

    def stop_waiting(self) -> None:
        w, self.waiting = self.waiting, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if w is not None:
            waiting = self.server.waiting.get(w.name)
            if waiting is not None:
                waiting.discard(self)
                if not waiting:
                    del self.server.waiting[w.name]

    def answer_now(self) -> None:
        w = self.waiting
        if w is None:
            return
        self.stop_waiting()
        self.respond(200, self.server.look(w.name), close=self.close_after)
        self.next_request()

    def respond(self, code: int, body: dict[str, Any] | bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n%s\r\n"
                             % (code, _REASONS[code], len(data),
                                b"Connection: close\r\n" if close else b"") + data)
        if close:
            self.transport.close()


class PlaceWatchServer:
    """Serves the places of `coordinator` (the janitor's client, which follows every place).

    In the client's own event loop, where it is told of each change: a holder keeps one
    connection and always has a poll waiting, and a change answers it with no hand-over
    between threads (a thread per connection, http.server's, was a thread per holder; a loop
    of its own was a wake of that loop for each change)."""

    def __init__(self, coordinator: Coordinator, address: str = "127.0.0.1", port: int = 0):
        self.coordinator = coordinator
        self.loop = coordinator.loop
        # In the loop's thread only (watches() and changed() are called there):
        self.gen: dict[str, int] = {}
        self.epoch = 0
        self.asked: dict[str, float] = {}  # place -> monotonic time it was last asked about
        self.encoded: dict[str, tuple[Place | None, bytes]] = {}  # the last answer's place
        self.waiting: dict[str, set[_Connection]] = {}
        self.connections: set[_Connection] = set()
        self.requests = 0  # polls and looks
        self.dones = 0
        self.connections_opened = 0
        self._closed = False

        async def start() -> asyncio.Server:
            return await self.loop.create_server(lambda: _Connection(self), address, port)

        self._server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"http://{address}:{self._server.sockets[0].getsockname()[1]}"
        coordinator.add_listener(self)

    # --- told by the coordinator's client (in its event loop) ------------------------------

    def watches(self, name: str) -> bool:
        t = self.asked.get(name)
        return t is not None and time.monotonic() - t < FORGET_S

    def changed(self, names: Iterable[str] | None) -> None:
        """`names` changed; None: everything may have (a new connection, or none)."""
        if names is None:
            self.epoch += 1
            names = list(self.waiting)
        else:
            names = list(names)
            for n in names:
                self.gen[n] = self.gen.get(n, 0) + 1
        for n in names:
            for conn in list(self.waiting.get(n, ())):
                conn.answer_now()

    # --- the long poll ----------------------------------------------------------------------

    def token(self, name: str) -> str:
        return f"{self.epoch}.{self.gen.get(name, 0)}"

    def look(self, name: str) -> bytes:
        """The place as the janitor's client has it now, with its token (JSON)."""
        self.asked[name] = time.monotonic()
        c = self.coordinator
        try:  # the janitor's client keeps each place converted as it changes (eager)
            place: Place | None = c.place(name)
        except CoordinatorError:
            place = None
        encoded = self.encoded.get(name)
        if encoded is None or encoded[0] is not place:  # each version is encoded once
            encoded = self.encoded[name] = (place, json.dumps(
                None if place is None else _fields(place)).encode())
        return b'{"token": "%s", "connected": %s, "connections": %d, "place": %s}' % (
            self.token(name).encode(), b"true" if c.connected else b"false", c.connections,
            encoded[1])

    def answer(self, target: str) -> tuple[int, dict[str, Any]] | _Wait:
        """A request's answer, or the poll to wait with."""
        url = urllib.parse.urlsplit(target)
        if not url.path.startswith(PATH) or len(url.path) == len(PATH):
            return 404, {"error": f"ask {PATH}PLACE?after=TOKEN&wait=SECONDS"}
        query = urllib.parse.parse_qs(url.query)
        try:
            wait = float(query.get("wait", ["0"])[0])
        except ValueError:
            return 400, {"error": "wait: seconds"}
        self.requests += 1
        now = time.monotonic()
        if len(self.asked) > 64:  # forget, now and then, the places nobody asks about
            for n in [n for n, t in self.asked.items() if now - t > FORGET_S]:
                del self.asked[n]
                self.encoded.pop(n, None)
        name = urllib.parse.unquote(url.path[len(PATH):])
        self.asked[name] = now
        return _Wait(name, query.get("after", [""])[0], max(0.0, min(wait, MAX_WAIT_S)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.coordinator.remove_listener(self)

        async def shut() -> None:
            self._server.close()
            for conn in list(self.connections):
                conn.stop_waiting()
                if conn.transport is not None:
                    conn.transport.abort()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)


class RelayGone(Exception):
    """The janitor's place watch did not answer: the holder goes back to its own stream."""


class _Pool:
    """This process's idle connections to janitors' place watches, between its holds: a
    release gives its connection back, and the next hold (a bench, a release run, a health
    check) takes it instead of opening one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[tuple[float, socket.socket]]] = {}

    def take(self, address: tuple[str, int]) -> socket.socket | None:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(address, [])
            while idle:
                since, sock = idle.pop()
                if now - since < POOL_IDLE_S:
                    return sock
                sock.close()
        return None

    def give(self, address: tuple[str, int], sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(address, [])
            if len(idle) < POOL_MAX:
                idle.append((time.monotonic(), sock))
                return
        sock.close()


_POOL = _Pool()


class RelayView:
    """A holder's view of its one place through the janitor: what its watch reads instead of
    its own client's copy (generation, wait_for_change, place, connected, connections)."""

    def __init__(self, url: str, name: str, timeout: float = 5.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise RelayGone(f"{WATCH_TAG} {url!r} is not http://HOST:PORT")
        self.url = url.rstrip("/")
        self._host, self._port = parts.hostname, parts.port
        self.name = name
        self.timeout = timeout
        self.token = ""
        self.connected = False
        self.connections = 0
        self._place: Place | None = None
        self._sock = _POOL.take((self._host, self._port))
        self._received = b""  # read past the last answer: the next one's beginning
        # abort() comes from another thread while the watch's thread polls: the lock orders
        # what each sends, so that `done` follows the poll it ends, or no poll follows it.
        self._send_lock = threading.Lock()
        self._aborted = False
        self._polling = False  # a long poll is in progress (abort() ends it)
        self._done_sent = False  # its answer is still to be read (by _settle)
        self._last_look = False  # the last answer came to a poll that abort() ended
        self.refresh()

    def _fetch(self, after: str, wait: float) -> None:
        if self._aborted and wait > 0:  # a look (refresh) is still answered
            raise RelayGone("the watch was stopped")
        query = urllib.parse.urlencode({"after": after, "wait": f"{wait:.3f}"})
        path = f"{PATH}{urllib.parse.quote(self.name, safe='')}?{query}"
        reused = self._sock is not None
        try:
            try:
                body, last = self._get(path, wait)
            except ConnectionError:
                if not reused or (self._aborted and wait > 0):
                    raise
                body, last = self._get(path, wait)  # the kept connection had ended: a new one
            place = body["place"]
            self._place = None if place is None else Place(**place)
            self.connected = bool(body["connected"])
            self.connections = int(body["connections"])
            self.token = str(body["token"])
            self._last_look = last
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.close()
            raise RelayGone(f"the janitor's place watch at {self.url}: {e}") from e

    def _get(self, path: str, wait: float) -> tuple[Any, bool]:
        """One request on the kept connection (a new one if there is none); True second if
        it was a poll that abort() ended: its answer is the place as it was then.

        HTTP/1.1 by hand: one GET and its answer with a Content-Length, the whole of this
        protocol (http.client's header parsing was most of a holder's watch)."""
        sock = self._sock
        if sock is None:
            sock = self._sock = socket.create_connection((self._host, self._port),
                                                         timeout=self.timeout)
            self._received = b""
        try:
            self._settle(sock)
            sock.settimeout(wait + self.timeout)
            with self._send_lock:
                if self._aborted and wait > 0:
                    raise RelayGone("the watch was stopped")
                self._polling = wait > 0
                sock.sendall(self._request(path))
            status, data = self._response(sock)
        except ConnectionError:
            self.close()
            raise
        finally:
            with self._send_lock:
                self._polling = False
        if status != 200:
            raise ValueError(f"HTTP {status}")
        return json.loads(data), wait > 0 and self._aborted

    def _request(self, path: str) -> bytes:
        return b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), self._host.encode())

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        data = self._received
        while (end := data.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the janitor's place watch closed the connection")
            data += chunk
            if len(data) > 65536:
                raise ValueError("no end of the answer's headers")
        lines = data[:end].split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next((int(v) for n, _, v in (line.partition(b":") for line in lines[1:])
                       if n.strip().lower() == b"content-length"), None)
        if length is None:
            raise ValueError("an answer without a Content-Length")
        body = data[end + 4:]
        while len(body) < length:
            chunk = sock.recv(max(65536, length - len(body)))
            if not chunk:
                raise ConnectionResetError("the janitor's place watch closed the connection")
            body += chunk
        # `done`'s answer can come in the same read as the poll's it ended.
        self._received = body[length:]
        return status, body[:length]

    def _settle(self, sock: socket.socket) -> None:
        """Read the answer to `done`, if it is still to come: the connection is then between
        answers."""
        if self._done_sent:
            sock.settimeout(self.timeout)
            status, _ = self._response(sock)
            if status != 200:
                raise ValueError(f"HTTP {status} to {DONE_PATH}")
            self._done_sent = False

    def close(self, keep: bool = False) -> None:
        """Let go of the kept connection. `keep`: give it to this process's next hold (only
        once no thread polls on it); it is closed instead if it is not between answers."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if keep:
            try:
                self._settle(sock)
                if not self._received:
                    _POOL.give((self._host, self._port), sock)
                    return
            except (OSError, ValueError):
                pass
        self._received = b""
        self._done_sent = False
        sock.close()

    def abort(self, hard: bool = False) -> None:
        """End a long poll in progress (from another thread), and any later one (they raise
        RelayGone). The poll in progress gets the place as it is now: the holder says `done`,
        the janitor answers the poll first, and `refresh()` takes that answer as its look.
        `hard`: cut the connection (a janitor that does not answer so ends the poll with
        RelayGone)."""
        with self._send_lock:
            self._aborted = True
            sock = self._sock
            if sock is None or not (self._polling or hard):
                return
            if not hard and not self._done_sent:
                try:
                    sock.sendall(self._request(DONE_PATH))
                    self._done_sent = True
                    return
                except OSError:
                    pass
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR if hard else socket.SHUT_WR)

    def refresh(self) -> None:
        if self._last_look:  # the answer to the poll that abort() ended: as fresh
            self._last_look = False
            return
        self._fetch("", 0.0)

    @property
    def generation(self) -> str:
        return self.token

    def wait_for_change(self, generation: str, timeout: float) -> str:
        self._fetch(generation, min(timeout, MAX_WAIT_S))
        return self.token

    def place(self, name: str) -> Place:
        if name != self.name or self._place is None:
            raise CoordinatorError(f"place {name} is not known to the janitor at {self.url}")
        return self._place
