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
janitor's client (re)connects, or after SECONDS (at most MAX_WAIT_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from hil.scheduling.coordinator import Coordinator, CoordinatorError, Place

WATCH_TAG = "hil-watch"
MAX_WAIT_S = 25.0
# A place nobody has asked about for this long is no longer matched against resource updates.
FORGET_S = 90.0
PATH = "/v1/place/"


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


class PlaceWatchServer:
    """Serves the places of `coordinator` (the janitor's client, which follows every place).

    On an event loop of its own: a holder keeps one connection and always has a poll
    waiting, so a thread per connection (http.server's) was a thread per holder, and each
    connection's start and each request's parsing were most of the janitor's cost."""

    def __init__(self, coordinator: Coordinator, address: str = "127.0.0.1", port: int = 0):
        self.coordinator = coordinator
        self._lock = threading.Lock()  # _gen and _epoch, changed in the coordinator's loop
        self._gen: dict[str, int] = {}
        self._epoch = 0
        # In this server's loop only (watches() peeks from the coordinator's):
        self._asked: dict[str, float] = {}  # place -> monotonic time it was last asked about
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.connections_opened = 0
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hil-placewatch",
                                        daemon=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self._serve, address, port), self._loop).result(10)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise
        self.url = f"http://{address}:{self._server.sockets[0].getsockname()[1]}"
        coordinator.add_listener(self)

    # --- told by the coordinator's client (in its event loop) ------------------------------

    def watches(self, name: str) -> bool:
        t = self._asked.get(name)  # one dict read: safe across threads
        return t is not None and time.monotonic() - t < FORGET_S

    def changed(self, names: Iterable[str] | None) -> None:
        """`names` changed; None: everything may have (a new connection, or none)."""
        with self._lock:
            if names is None:
                self._epoch += 1
            else:
                names = list(names)
                for n in names:
                    self._gen[n] = self._gen.get(n, 0) + 1
        # A poll registers before it compares tokens, and the token moved before this look:
        # either the poll sees the new token or this sees the poll.
        if not self._closed and (names is None or any(n in self._waiting for n in names)):
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self._loop.call_soon_threadsafe(self._wake, names)

    def _wake(self, names: list[str] | None) -> None:
        for n in (list(self._waiting) if names is None else names):
            for f in self._waiting.get(n, ()):
                if not f.done():
                    f.set_result(None)

    # --- the long poll ----------------------------------------------------------------------

    def _token(self, name: str) -> str:
        with self._lock:
            return f"{self._epoch}.{self._gen.get(name, 0)}"

    async def _wait(self, name: str, after: str, wait: float) -> dict[str, Any]:
        self.requests += 1
        now = time.monotonic()
        if len(self._asked) > 64:  # forget, now and then, the places nobody asks about
            for n in [n for n, t in self._asked.items() if now - t > FORGET_S]:
                del self._asked[n]
        self._asked[name] = now
        wait = max(0.0, min(wait, MAX_WAIT_S))
        if wait > 0:
            f: asyncio.Future[None] = self._loop.create_future()
            waiting = self._waiting.setdefault(name, set())
            waiting.add(f)
            try:
                if self._token(name) == after:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(f, wait)
            finally:
                waiting.discard(f)
                if not waiting:
                    self._waiting.pop(name, None)
        token = self._token(name)
        self._asked[name] = time.monotonic()
        # Read after the token: a change in between is answered again on the next poll. The
        # janitor's client keeps each place converted as it changes (Coordinator eager).
        c = self.coordinator
        try:
            place: dict[str, Any] | None = asdict(c.place(name))
        except CoordinatorError:
            place = None
        return {"token": token, "connected": c.connected, "connections": c.connections,
                "place": place}

    async def answer(self, target: str) -> tuple[int, dict[str, Any]]:
        url = urllib.parse.urlsplit(target)
        if not url.path.startswith(PATH) or len(url.path) == len(PATH):
            return 404, {"error": f"ask {PATH}PLACE?after=TOKEN&wait=SECONDS"}
        query = urllib.parse.parse_qs(url.query)
        try:
            wait = float(query.get("wait", ["0"])[0])
        except ValueError:
            return 400, {"error": "wait: seconds"}
        name = urllib.parse.unquote(url.path[len(PATH):])
        return 200, await self._wait(name, query.get("after", [""])[0], wait)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 GETs, one after another on a kept connection."""
        self.connections_opened += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while not self._closed:
                request = await reader.readline()
                if not request:
                    return
                close = False
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"connection" and b"close" in value.lower():
                        close = True
                parts = request.split()
                if len(parts) != 3:
                    code, body = 400, {"error": "not an HTTP request"}
                    close = True
                elif parts[0] != b"GET":
                    code, body = 405, {"error": "GET only"}
                else:
                    code, body = await self.answer(parts[1].decode("latin-1"))
                data = json.dumps(body).encode()
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n%s\r\n"
                             % (code, _REASONS[code], len(data),
                                b"Connection: close\r\n" if close else b"") + data)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, OSError, ValueError):
            pass  # a holder that let go (RelayView.abort), or garbage
        finally:
            self._tasks.discard(task)
            writer.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.coordinator.remove_listener(self)

        async def shut() -> None:
            self._server.close()
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


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
        self._conn: http.client.HTTPConnection | None = None
        self._aborted = False
        self.refresh()

    def _fetch(self, after: str, wait: float) -> None:
        if self._aborted and wait > 0:  # a look (refresh) is still answered
            raise RelayGone("the watch was stopped")
        query = urllib.parse.urlencode({"after": after, "wait": f"{wait:.3f}"})
        path = f"{PATH}{urllib.parse.quote(self.name, safe='')}?{query}"
        reused = self._conn is not None
        try:
            try:
                body = self._get(path, wait)
            except (http.client.RemoteDisconnected, ConnectionError):
                if not reused or (self._aborted and wait > 0):
                    raise
                body = self._get(path, wait)  # the kept connection had ended: a new one
            place = body["place"]
            self._place = None if place is None else Place(**place)
            self.connected = bool(body["connected"])
            self.connections = int(body["connections"])
            self.token = str(body["token"])
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as e:
            self.close()
            raise RelayGone(f"the janitor's place watch at {self.url}: {e}") from e

    def _get(self, path: str, wait: float) -> Any:
        """One request on the kept connection (a new one if there is none)."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port,
                                                    timeout=self.timeout)
        conn = self._conn
        try:
            if conn.sock is None:
                conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(wait + self.timeout)
            conn.request("GET", path)
            if self._aborted and wait > 0:
                # abort() came while this poll connected: it could not shut a socket yet.
                self.close()
                raise RelayGone("the watch was stopped")
            r = conn.getresponse()
            data = r.read()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.close()
            raise
        if r.status != 200:
            raise ValueError(f"HTTP {r.status}")
        return json.loads(data)

    def close(self) -> None:
        """Let go of the kept connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """End a long poll in progress (from another thread), and any later one: they raise
        RelayGone."""
        self._aborted = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def refresh(self) -> None:
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
