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

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hil.scheduling.coordinator import Coordinator, CoordinatorError, Place

WATCH_TAG = "hil-watch"
MAX_WAIT_S = 25.0
# A place nobody has asked about for this long is no longer matched against resource updates.
FORGET_S = 90.0
PATH = "/v1/place/"


class PlaceWatchServer:
    """Serves the places of `coordinator` (the janitor's client, which follows every place)."""

    def __init__(self, coordinator: Coordinator, address: str = "127.0.0.1", port: int = 0):
        self.coordinator = coordinator
        self._lock = threading.Lock()
        self._conds: dict[str, threading.Condition] = {}
        self._gen: dict[str, int] = {}
        self._epoch = 0
        self._asked: dict[str, float] = {}  # place -> monotonic time it was last asked about
        self.requests = 0
        self.connections_opened = 0
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Persistent connections: a holder polls again at once after every answer, and a
            # new connection (and thread) for each poll was most of the janitor's cost.
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections_opened += 1

            def do_GET(self) -> None:
                try:
                    code, body = server.answer(self.path)
                    data = json.dumps(body).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # a holder that let go (RelayView.abort)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{address}:{self.httpd.server_address[1]}"
        coordinator.add_listener(self)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hil-placewatch",
                                        daemon=True)
        self._thread.start()

    # --- told by the coordinator's client (in its event loop) ------------------------------

    def watches(self, name: str) -> bool:
        t = self._asked.get(name)  # one dict read: safe without the lock
        return t is not None and time.monotonic() - t < FORGET_S

    def changed(self, names: Iterable[str] | None) -> None:
        """`names` changed; None: everything may have (a new connection, or none)."""
        with self._lock:
            if names is None:
                self._epoch += 1
                conds = list(self._conds.values())
            else:
                conds = []
                for n in names:
                    self._gen[n] = self._gen.get(n, 0) + 1
                    if (c := self._conds.get(n)) is not None:
                        conds.append(c)
            for c in conds:
                c.notify_all()

    # --- the long poll ----------------------------------------------------------------------

    def _token(self, name: str) -> str:
        return f"{self._epoch}.{self._gen.get(name, 0)}"

    def wait(self, name: str, after: str, wait: float) -> dict[str, Any]:
        deadline = time.monotonic() + max(0.0, min(wait, MAX_WAIT_S))
        with self._lock:
            self.requests += 1
            now = time.monotonic()
            for n in [n for n, t in self._asked.items() if now - t > FORGET_S]:
                del self._asked[n]
                self._conds.pop(n, None)
            self._asked[name] = now
            cond = self._conds.setdefault(name, threading.Condition(self._lock))
            while self._token(name) == after and (left := deadline - time.monotonic()) > 0:
                cond.wait(left)
            token = self._token(name)
            self._asked[name] = time.monotonic()
        # Read after the token: a change in between is answered again on the next poll.
        c = self.coordinator
        try:
            place: dict[str, Any] | None = asdict(c.place(name))
        except CoordinatorError:
            place = None
        return {"token": token, "connected": c.connected, "connections": c.connections,
                "place": place}

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        url = urllib.parse.urlsplit(path)
        if not url.path.startswith(PATH) or len(url.path) == len(PATH):
            return 404, {"error": f"ask {PATH}PLACE?after=TOKEN&wait=SECONDS"}
        query = urllib.parse.parse_qs(url.query)
        try:
            wait = float(query.get("wait", ["0"])[0])
        except ValueError:
            return 400, {"error": "wait: seconds"}
        name = urllib.parse.unquote(url.path[len(PATH):])
        return 200, self.wait(name, query.get("after", [""])[0], wait)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.coordinator.remove_listener(self)
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._lock:
            self._epoch += 1
            for c in self._conds.values():
                c.notify_all()


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
        try:
            try:
                body = self._get(path, wait, reused=self._conn is not None)
            except (http.client.RemoteDisconnected, ConnectionError) as e:
                if not getattr(e, "hil_reused", False) or (self._aborted and wait > 0):
                    raise
                body = self._get(path, wait, reused=False)  # a kept connection had ended
            place = body["place"]
            self._place = None if place is None else Place(**place)
            self.connected = bool(body["connected"])
            self.connections = int(body["connections"])
            self.token = str(body["token"])
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as e:
            self.close()
            raise RelayGone(f"the janitor's place watch at {self.url}: {e}") from e

    def _get(self, path: str, wait: float, reused: bool) -> Any:
        """One request on the kept connection (a new one if there is none)."""
        if self._conn is None or not reused:
            self.close()
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
        except (http.client.RemoteDisconnected, ConnectionError) as e:
            e.hil_reused = reused  # type: ignore[attr-defined]
            self.close()
            raise
        if r.status != 200:
            raise ValueError(f"HTTP {r.status}")
        return json.loads(data)

    def close(self) -> None:
        """Let go of the kept connection (its thread in the janitor ends with it)."""
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
