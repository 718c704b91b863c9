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

It answers as soon as the place or one of its resources changed after TOKEN, or when the
janitor's client (re)connects, or after SECONDS (at most MAX_WAIT_S), or when the holder
stops sending (it lets go: that answer is its release's last look, on the same connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections_opened += 1
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
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
        self.requests = 0
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
        self._sock: socket.socket | None = None
        self._aborted = False
        self._polling = False  # a long poll is in progress (abort() ends it)
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
        self._polling = wait > 0
        try:
            sock.settimeout(wait + self.timeout)
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                         % (path.encode(), self._host.encode()))
            if self._aborted and wait > 0:
                # abort() came while this poll connected: it may not have seen the socket.
                self._end_sending(sock)
            status, data = self._response(sock)
        except ConnectionError:
            self.close()
            raise
        finally:
            self._polling = False
        last = wait > 0 and self._aborted
        if last:
            self.close()  # the server ends the connection after that answer
        if status != 200:
            raise ValueError(f"HTTP {status}")
        return json.loads(data), last

    @staticmethod
    def _response(sock: socket.socket) -> tuple[int, bytes]:
        data = b""
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
        return status, body[:length]

    @staticmethod
    def _end_sending(sock: socket.socket, how: int = socket.SHUT_WR) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(how)

    def close(self) -> None:
        """Let go of the kept connection."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def abort(self, hard: bool = False) -> None:
        """End a long poll in progress (from another thread), and any later one (they raise
        RelayGone). The poll in progress gets the place as it is now: the janitor answers when
        the holder stops sending, and `refresh()` takes that answer as its look. `hard`: cut
        the connection (a janitor that does not answer so ends the poll with RelayGone)."""
        self._aborted = True
        sock = self._sock
        if sock is not None and (self._polling or hard):
            self._end_sending(sock, socket.SHUT_RDWR if hard else socket.SHUT_WR)

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
