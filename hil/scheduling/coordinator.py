"""labgrid's coordinator as hil asks it things: labgrid's own client session
(`labgrid.remote.client.ClientSession`) and the coordinator's gRPC messages, never the
`labgrid-client` command or its printed text.

One `Coordinator` is one client at the coordinator, with an identity of its own (`host/user`
as labgrid shows a place's holder): a pytest session, a health check, each board of a release.
Its places and resources are kept current by the coordinator's stream of updates, so reading
them costs no call; `wait_for_change()` wakes a caller on the next update instead of polling.

What labgrid's API lacks, and the smallest wrapper for it here:
- `ClientSession` methods take their arguments from an argparse namespace and print their
  results, so writes call the coordinator's stub (`session.stub`) with its request messages;
- the session does not reconnect when its stream ends (a coordinator restart), so this class
  starts a new session with the same identity and says so to its waiters;
- the session has no notification of updates, so a subclass extends its two update hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import getpass
import glob
import logging
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc  # type: ignore[import-untyped]
from labgrid.remote.client import ClientSession
from labgrid.remote.common import Place as LgPlace
from labgrid.remote.common import Reservation as LgReservation
from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
from labgrid.remote.generated import labgrid_coordinator_pb2_grpc
from labgrid.util import Timeout

from hil.errors import InfrastructureError
from hil.measure import procstat

log = logging.getLogger("hil.coordinator")
T = TypeVar("T")
CALL_TIMEOUT_S = 30.0
NO_PLACE = "hil-no-place"  # a place name no lab has (see Coordinator._reschedule)
# labgrid's own keepalive settings (labgrid/remote/client.py), so a dead coordinator is noticed
# within ~20 s even when nothing is sent.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 7500),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.http2.ping_timeout_ms", 10000),
    ("grpc.http2.max_pings_without_data", 0),
]


@dataclass(frozen=True)
class Place:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    acquired: str | None = None  # "host/user" of the holder
    resources: dict[str, bool] = field(default_factory=dict)  # exporter/group/cls/name -> avail
    reservation: str | None = None  # the token it is allocated to
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> parameters


@dataclass(frozen=True)
class Reservation:
    token: str
    owner: str
    state: str  # waiting, allocated, acquired, expired, invalid
    prio: float
    filters: dict[str, str]
    allocation: str | None
    created: float


class CoordinatorError(InfrastructureError):
    """The coordinator refused or did not answer."""


class CoordinatorUnreachable(CoordinatorError):
    """No stream to the coordinator right now (it may be restarting)."""


def identity(purpose: str, environ: Mapping[str, str] = os.environ) -> str:
    """A holder name of its own for one session: `host/user+purpose-pid-random`.

    labgrid tells holders apart by `host/user` alone, and two sessions of one user on one host
    would be taken for one another (either could release or renew the other's place). The
    host and user stay readable (`LG_HOSTNAME`, `LG_USERNAME` are honoured as labgrid does)."""
    host = environ.get("LG_HOSTNAME") or socket.gethostname()
    user = environ.get("LG_USERNAME") or getpass.getuser()
    word = "".join(c if c.isalnum() or c in "-_." else "-" for c in purpose) or "session"
    return f"{host}/{user}+{word}-{os.getpid()}-{secrets.token_hex(3)}"


def split_identity(name: str) -> tuple[str, str]:
    host, _, user = name.partition("/")
    return host, user


def place_with(lg_place: Any, found: dict[str, bool], params: dict[str, dict[str, Any]]) -> Place:
    """Our Place from labgrid's and the resources its matches found (see resources_of)."""
    return Place(lg_place.name, dict(lg_place.tags), lg_place.comment or "",
                 lg_place.acquired or None, found, lg_place.reservation or None, params)


def matches_key(lg_place: Any) -> tuple[tuple[str, str, str, str | None], ...]:
    """What decides which resources a place has, beside the resources themselves."""
    return tuple((m.exporter, m.group, m.cls, m.name) for m in lg_place.matches)


def resources_of(lg_place: Any, resources: Mapping[str, Any]) \
        -> tuple[dict[str, bool], dict[str, dict[str, Any]]]:
    """The place's resources (exporter/group/cls/name -> available) and their parameters,
    from the session's resources (exporter -> group -> name)."""
    found: dict[str, bool] = {}
    params: dict[str, dict[str, Any]] = {}
    for exporter, group, name, entry in _candidates(lg_place, resources):
        data = entry.data
        if "cls" not in data:
            continue  # deleted: the exporter went away
        path = (exporter, group, data["cls"], name)
        if lg_place.hasmatch(path):
            key = "/".join(path)
            found[key] = bool(data.get("avail"))
            params[key] = dict(data.get("params") or {})
    return found, params


def _candidates(lg_place: Any, resources: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """The resources a place's matches could name: only the exporters and groups they spell
    out, unless a match has a wildcard there (a lab of N places would otherwise test every
    place against every resource, N x R, on each look)."""
    seen: set[tuple[str, str]] = set()
    for m in lg_place.matches:
        exporters = [e for e in resources if fnmatch.fnmatchcase(e, m.exporter)] \
            if glob.has_magic(m.exporter) else [m.exporter]
        for exporter in exporters:
            groups = resources.get(exporter) or {}
            names = [g for g in groups if fnmatch.fnmatchcase(g, m.group)] \
                if glob.has_magic(m.group) else [m.group]
            for group in names:
                if (exporter, group) in seen:
                    continue
                seen.add((exporter, group))
                for name, entry in (groups.get(group) or {}).items():
                    yield exporter, group, name, entry


def match_patterns(lg_place: Any) -> tuple[tuple[str, str], ...]:
    return tuple((m.exporter, m.group) for m in lg_place.matches)


class MatchIndex:
    """Which places could match a resource of an exporter and group, kept as places change:
    every lock and release in a rack updates resources, each client receives all of them, and
    testing each against every place cost N per update."""

    def __init__(self) -> None:
        self._patterns: dict[str, tuple[tuple[str, str], ...]] = {}
        self._exact: dict[tuple[str, str], set[str]] = {}
        self._globbed: dict[str, tuple[tuple[str, str], ...]] = {}  # with a wildcard

    def put(self, name: str, patterns: tuple[tuple[str, str], ...] | None) -> None:
        """`patterns`: the place's (exporter, group) matches now; None: it was deleted."""
        old = self._patterns.get(name)
        if old == patterns:
            return
        for key in old or ():
            if (names := self._exact.get(key)) is not None:
                names.discard(name)
        self._globbed.pop(name, None)
        if patterns is None:
            self._patterns.pop(name, None)
            return
        self._patterns[name] = patterns
        for exporter, group in patterns:
            if glob.has_magic(exporter) or glob.has_magic(group):
                self._globbed[name] = patterns
            else:
                self._exact.setdefault((exporter, group), set()).add(name)

    def matching(self, exporter: str, group: str) -> set[str]:
        names = set(self._exact.get((exporter, group), ()))
        for name, patterns in self._globbed.items():
            if any(fnmatch.fnmatchcase(exporter, e) and fnmatch.fnmatchcase(group, g)
                   for e, g in patterns):
                names.add(name)
        return names


class ChangeListener(Protocol):
    """Told of updates in the client's event loop: must not block."""

    def watches(self, name: str) -> bool:
        """Whether it wants the updates of this place's resources."""

    def changed(self, names: Iterable[str] | None) -> None:
        """These places changed; None: any may have (a new connection, or none)."""


class _Unary:
    """A channel for the coordinator's unary calls alone, without the stream (see
    Coordinator.detach). Made in the client's event loop."""

    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(
            target=address, options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
        self.stub = labgrid_coordinator_pb2_grpc.CoordinatorStub(self.channel)
        self.stopping = asyncio.Event()  # never set: there is no stream to end

    async def sync_with_coordinator(self) -> bool:
        return True  # no stream, no copy of the places to bring up to date


def reservation_from_pb(r: Any) -> Reservation:
    res = LgReservation.from_pb2(r)
    allocation = next((places[0] for places in res.allocations.values() if places), None)
    return Reservation(res.token, res.owner, res.state.name, float(res.prio),
                       dict(res.filters.get("main", {})), allocation, float(res.created))


class _QuietReconnects(logging.Filter):
    """labgrid's session logs an error on the root logger each time its stream cannot start
    or ends; this client retries every half second while the coordinator is away and says
    so itself, once (`Coordinator._stay_connected`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.pathname.endswith("labgrid/remote/client.py")
                    and str(record.msg).startswith(("coordinator is unavailable",
                                                    "coordinator became unavailable")))


logging.getLogger().addFilter(_QuietReconnects())


class _Session(ClientSession):  # type: ignore[misc]
    """labgrid's client session under a name of hil's, telling us of every update."""

    def __init__(self, name: str,
                 on_update: Callable[[_Session, str, tuple[tuple[str, str], ...] | None], None],
                 on_resource: Callable[[_Session, str, str], None],
                 follows: Callable[[], frozenset[str] | None], *args: Any, **kwargs: Any):
        self.hil_name = name
        self.hil_on_update = on_update
        self.hil_on_resource = on_resource
        self.hil_follows = follows
        super().__init__(*args, **kwargs)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # gRPC shares one connection between the channels of a process that name the same
        # address, and the coordinator tells clients apart by their connection's peer: a
        # channel with its own subchannel pool is a client of its own (labgrid's RemotePlace
        # keeps its session beside ours in a pytest run). Not connected yet: nothing is lost.
        self.channel = grpc.aio.insecure_channel(
            target=self.address, options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
        self.stub = labgrid_coordinator_pb2_grpc.CoordinatorStub(self.channel)

    def gethostname(self) -> str:
        return split_identity(self.hil_name)[0]

    def getuser(self) -> str:
        return split_identity(self.hil_name)[1]

    async def on_resource_changed(self, exporter: str, group_name: str, resource_name: str,
                                  resource: Any) -> None:
        await super().on_resource_changed(exporter, group_name, resource_name, resource)
        self.hil_on_resource(self, exporter, group_name)

    def _ignores(self, name: str) -> bool:
        follows = self.hil_follows()
        return follows is not None and name not in follows

    async def on_place_changed(self, place_pb2: Any) -> None:
        # labgrid keeps a copy of every place and diffs it on each update: a holder's client
        # that follows one place skips the others' updates (labgrid's stream has no
        # subscription to one place), which was most of a holding session's CPU.
        if self._ignores(place_pb2.name):
            return
        if self.monitor or place_pb2.name not in self.places:
            await super().on_place_changed(place_pb2)
        else:
            # labgrid's own conversion, without the two copies it diffs for `labgrid-client
            # monitor` alone (and its update in place, which converts twice): in a rack
            # every client receives every lock and release. Nobody keeps labgrid's object.
            self.places[place_pb2.name] = LgPlace.from_pb2(place_pb2)
        place = self.places.get(place_pb2.name)
        self.hil_on_update(self, place_pb2.name,
                           None if place is None else match_patterns(place))

    async def on_place_deleted(self, name: str) -> None:
        if self._ignores(name) or name not in self.places:
            return
        await super().on_place_deleted(name)
        self.hil_on_update(self, name, None)


class Coordinator:
    """One client of the coordinator at `address` (HOST:PORT), named `name`."""

    def __init__(self, address: str, name: str | None = None, *, purpose: str = "hil",
                 connect_timeout: float = 10.0, eager: bool = False):
        """`eager`: convert each place as it changes, in the client's event loop, so that
        reading it costs no hand-over to the loop: for the janitor, which reads every place
        that changes, and its place watch."""
        self.address = address
        self.eager = eager
        self.name = name or identity(purpose)
        self.connect_timeout = connect_timeout
        self._cond = threading.Condition()
        self._generation = 0  # counts updates and reconnections
        # Places updated since take_changes() last asked; everything, after a (re)connection.
        self._changed: set[str] = set()
        self._everything_changed = True
        self.connections = 0  # sessions started (1 + reconnections)
        # Updates received from the stream (of places this client follows), for the bench.
        self.updates = {"place": 0, "resource": 0}
        self._session: _Session | None = None
        # Places whose updates wake whoever waits for a change (None: every place). labgrid's
        # stream has no subscription to one place: a session holding one still decodes every
        # update, but its watch wakes only for its own place (its resources, reconnections),
        # not for each of the rack's other sessions.
        self.interest: frozenset[str] | None = None
        # Places this client still keeps up to date (None: all); see follow_only().
        self._follows: frozenset[str] | None = None
        self._closed = False
        self._final_cpu: float | None = None
        self._listeners: list[ChangeListener] = []
        # In the loop's thread: which places a resource could match.
        self._index = MatchIndex()
        # place() answers from here while the place and its resources are unchanged: each
        # read in the loop's thread is a hand-over between threads, and the janitor and its
        # place watch read a place on every update. Versions change in the loop's thread
        # only; the epoch with every new session.
        self._versions: dict[str, int] = {}
        self._epoch = 0
        self._place_cache: dict[str, tuple[tuple[int, int], Place]] = {}
        # In the loop's thread: each place's matches and the resources they found (shared by
        # its copies, which nobody changes).
        self._resources_of: dict[str, tuple[Any, dict[str, bool], dict[str, dict[str, Any]]]] = {}
        # Detached: no stream, unary calls over a channel of their own (see detach()).
        self._detached = False
        self._unary: _Unary | None = None
        self._attach_wanted: asyncio.Event | None = None  # made in the loop
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hil-coordinator",
                                        daemon=True)
        self._thread.start()
        self._supervisor = asyncio.run_coroutine_threadsafe(self._stay_connected(), self._loop)
        self._wait_connected(connect_timeout)

    # --- the connection ---------------------------------------------------------------------

    def _bump(self, session: _Session, name: str, resources: bool = False) -> None:
        """`name` changed (in the loop's thread): older copies are not answered again.
        `resources`: one of its resources changed; otherwise the place itself."""
        version = self._versions[name] = self._versions.get(name, 0) + 1
        p = session.places.get(name)
        if resources or p is None:
            self._resources_of.pop(name, None)
        if self.eager and p is not None:
            self._place_cache[name] = ((self._epoch, version), self._convert(session, p))

    def _convert(self, session: _Session, p: Any) -> Place:
        """Our Place from labgrid's, in the loop's thread: the place's resources are matched
        again only when they or its matches changed (a lock, a lease or a tag changes
        neither)."""
        key = matches_key(p)
        part = self._resources_of.get(p.name)
        if part is None or part[0] != key:
            part = self._resources_of[p.name] = (key, *resources_of(p, session.resources))
        return place_with(p, part[1], part[2])

    def _place_updated(self, session: _Session, name: str,
                       matches: tuple[tuple[str, str], ...] | None) -> None:
        """`matches`: the place's (exporter, group) patterns now; None: it was deleted."""
        self.updates["place"] += 1
        self._index.put(name, matches)
        self._bump(session, name)
        with self._cond:
            self._changed.add(name)
        for listener in self._listeners:
            listener.changed((name,))
        interest = self.interest
        if interest is None or name in interest:
            self._updated()

    def _resource_updated(self, session: _Session, exporter: str, group: str) -> None:
        """Wake only if a place of interest could match the resource (in the loop's thread,
        where the session's places may be read): every lock and release in the rack updates
        that place's resources, and each client receives all of them."""
        self.updates["resource"] += 1
        matching = self._index.matching(exporter, group)
        for name in matching:
            self._bump(session, name, resources=True)
        for listener in self._listeners:
            names = [n for n in matching if listener.watches(n)]
            if names:
                listener.changed(names)
        interest = self.interest
        if interest is None or not interest.isdisjoint(matching):
            self._updated()

    def _everything_updated(self) -> None:
        # A new session (or none): its copy of the places came before this call.
        session = self._session
        self._index = MatchIndex()
        if session is not None:
            for name, p in session.places.items():
                self._index.put(name, match_patterns(p))
        self._epoch += 1
        self._place_cache.clear()
        self._resources_of.clear()
        with self._cond:
            self._everything_changed = True
        for listener in self._listeners:
            listener.changed(None)
        self._updated()

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _updated(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    async def _connect(self) -> _Session:
        s = _Session(self.name, self._place_updated, self._resource_updated,
                     lambda: self._follows, self.address, self._loop)
        try:
            await asyncio.wait_for(s.start(), self.connect_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await s.stop()
                await s.close()
            raise
        return s

    async def _stay_connected(self) -> None:
        said = False
        self._attach_wanted = asyncio.Event()
        while not self._closed:
            if self._detached:
                await self._attach_wanted.wait()  # reattach() or close()
                self._attach_wanted.clear()
                continue
            try:
                session = await self._connect()
            except Exception as e:  # refused, timed out: the coordinator is not there (yet)
                if not said and self.connections:
                    log.warning("coordinator %s is away (%s): reconnecting as %s", self.address,
                                e or type(e).__name__, self.name)
                    said = True
                await asyncio.sleep(0.5)
                continue
            said = False
            self._session = session
            self.connections += 1
            self._everything_updated()
            await session.stopping.wait()  # the stream ended: coordinator gone or restarted
            self._session = None
            self._everything_updated()
            with contextlib.suppress(Exception):
                await session.stop()
                await session.close()
            if not self._closed and not self._detached:
                log.info("coordinator %s: stream ended, reconnecting as %s", self.address,
                         self.name)
                await asyncio.sleep(0.2)

    def _wait_connected(self, timeout: float) -> None:
        deadline = Timeout(float(timeout))
        with self._cond:
            while self._session is None:
                left = deadline.remaining
                if left <= 0:
                    self.close()
                    raise CoordinatorUnreachable(
                        f"no coordinator answers at {self.address} within {timeout:g} s: is "
                        "it running (`hil lab up` for the virtual lab), or set LG_COORDINATOR")
                self._cond.wait(left)

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The client's event loop, where listeners are told of changes (and may serve)."""
        return self._loop

    @property
    def detached(self) -> bool:
        return self._detached

    def detach(self) -> None:
        """Stop receiving the coordinator's stream: from now on this client only writes and
        asks about reservations (unary calls, over a channel of their own), and reads no
        place. For a holder whose watch follows its place elsewhere (hil.scheduling.placewatch):
        labgrid's coordinator sends every client every update of the rack. The coordinator
        keeps the lock (it forgets a client's session when its stream ends, not its places)."""
        async def go() -> None:
            if self._unary is None:
                self._unary = _Unary(self.address)
            self._detached = True
            if self._session is not None:
                await self._session.stop()  # _stay_connected sees the stream end and waits

        asyncio.run_coroutine_threadsafe(go(), self._loop).result(CALL_TIMEOUT_S)

    def reattach(self, timeout: float) -> bool:
        """Take the stream again (after detach()); True once connected within `timeout`."""
        async def go() -> None:
            self._detached = False
            if self._attach_wanted is not None:
                self._attach_wanted.set()

        if self._detached:
            asyncio.run_coroutine_threadsafe(go(), self._loop).result(CALL_TIMEOUT_S)
        return self.wait_connected(timeout)

    @property
    def generation(self) -> int:
        return self._generation

    def wait_for_change(self, generation: int, timeout: float) -> int:
        """Block until an update after `generation` arrives (or `timeout`); the new one."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != generation or self._closed, timeout)
            return self._generation

    def take_changes(self) -> tuple[bool, frozenset[str]]:
        """The places updated (or deleted) since the last take, for a caller that keeps its
        own view of them (the janitor); True first if anything may have changed (a new
        connection, which starts from a fresh copy of every place)."""
        with self._cond:
            everything, changed = self._everything_changed, frozenset(self._changed)
            self._everything_changed = False
            self._changed.clear()
        return everything, changed

    def poke(self) -> None:
        """Wake whoever waits for a change (to look at something other than the stream)."""
        self._updated()

    def wait_connected(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._session is not None or self._closed,
                                       timeout) and self._session is not None

    def cpu_seconds(self) -> float:
        """CPU time of this client's own thread (the event loop that serves its stream and its
        calls), for the scheduler benchmark; kept after close()."""
        if self._final_cpu is not None:
            return self._final_cpu
        return procstat.cpu_seconds(f"/proc/self/task/{self._thread.native_id}/stat")

    def close(self) -> None:
        if self._closed:
            return
        self._final_cpu = procstat.cpu_seconds(f"/proc/self/task/{self._thread.native_id}/stat")
        self._closed = True
        self._updated()

        async def _end() -> None:
            s = self._session
            if s is not None:
                with contextlib.suppress(Exception):
                    await s.stop()
                    await s.close()
            if self._unary is not None:
                with contextlib.suppress(Exception):
                    await self._unary.channel.close()
            self._supervisor.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_end(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls ------------------------------------------------------------------------------

    def _run(self, make: Callable[[_Session], Awaitable[T]], what: str,
             timeout: float = CALL_TIMEOUT_S) -> T:
        async def call() -> T:
            # The session as the loop has it now: one taken in the caller's thread may have
            # ended since (detach() stops it, and _stay_connected forgets it a turn later).
            session: Any = self._session
            if session is not None and session.stopping.is_set():
                session = None
            if session is None and self._detached:
                session = self._unary  # unary calls only: see _read()
            if session is None:
                raise CoordinatorUnreachable(f"{what}: no stream to the coordinator at "
                                             f"{self.address} (restarting?)")
            return await make(session)

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result(timeout)
        except CancelledError as e:  # closed meanwhile
            raise CoordinatorUnreachable(f"{what}: the client was closed") from e
        except FutureTimeout as e:
            future.cancel()
            raise CoordinatorError(f"{what}: no answer from the coordinator at {self.address} "
                                   f"within {timeout:g} s") from e
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise CoordinatorUnreachable(f"{what}: {e.details()}") from e
            raise CoordinatorError(f"{what} (coordinator {self.address}): {e.details()}") from e

    def _rpc(self, method: str, request: Any, what: str) -> Any:
        async def call(s: _Session) -> Any:
            response = await getattr(s.stub, method)(request)
            # The stream has the coordinator's own view of our change once this returns. Not
            # on a stream that ended meanwhile: labgrid answers the syncs pending when its
            # stream ends, and a later one never (seen: a lease renewal waiting the call's
            # whole timeout after a detach).
            if not s.stopping.is_set():
                await s.sync_with_coordinator()
            return response

        return self._run(call, what)

    # Reads: the session's own copy, kept current by the stream.

    def follow_only(self, place: str) -> None:
        """From now on keep only `place` up to date: for a holder's client, which reads
        nothing else until it is closed. `places()` then lists that place alone, and reading
        another is an error rather than a stale answer."""
        self._follows = frozenset({place})

    def _read(self, what: str) -> None:
        if self._detached:
            raise CoordinatorError(f"{what}: this client has detached from the coordinator's "
                                   "stream (a holder's, whose watch follows its place through "
                                   "the janitor) and keeps no copy of the places")

    def _followed(self, name: str) -> None:
        self._read(f"place {name}")
        if self._follows is not None and name not in self._follows:
            raise CoordinatorError(f"this client follows only {', '.join(sorted(self._follows))}"
                                   f" (a holder's): place {name} is not kept up to date")

    def places(self) -> list[Place]:
        self._read("places")
        follows = self._follows

        async def snapshot(s: _Session) -> list[Place]:
            return [self._convert(s, p) for n, p in s.places.items()
                    if follows is None or n in follows]

        return self._run(snapshot, "places")

    def place(self, name: str) -> Place:
        self._followed(name)
        # Read before the copy: a change meanwhile leaves an entry that the next read misses.
        version = (self._epoch, self._versions.get(name, 0))
        cached = self._place_cache.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]

        def one(s: _Session) -> Place | None:  # the one place: not every place's copy
            p = s.places.get(name)
            return None if p is None else self._convert(s, p)

        async def in_loop(s: _Session) -> Place | None:
            return one(s)

        if threading.get_ident() == self._thread.ident:  # a listener, serving in the loop
            session = self._session
            if session is None:
                raise CoordinatorUnreachable(f"place {name}: no stream to the coordinator at "
                                             f"{self.address} (restarting?)")
            found = one(session)
        else:
            found = self._run(in_loop, "places")
        if found is None:
            raise CoordinatorError(f"place {name} does not exist at the coordinator "
                                   f"{self.address}")
        self._place_cache[name] = (version, found)
        return found

    def allocated_to(self, token: str) -> Place | None:
        """The place the coordinator allocated to reservation `token`, if any: a waiting
        session asks on every update of the rack, and converting every place each time was
        most of its CPU (N places, at the rack's update rate)."""
        self._read("places")
        follows = self._follows

        async def find(s: _Session) -> Place | None:
            for name, p in s.places.items():
                if p.reservation == token and (follows is None or name in follows):
                    return self._convert(s, p)
            return None

        return self._run(find, "places")

    def resource_paths(self) -> set[str]:
        """exporter/group/cls/name of every resource exported now."""
        self._read("resources")
        async def paths(s: _Session) -> set[str]:
            return {f"{e}/{g}/{entry.data['cls']}/{n}" for e, groups in s.resources.items()
                    for g, entries in groups.items() for n, entry in entries.items()
                    if "cls" in entry.data}

        return self._run(paths, "resources")

    def reservations(self) -> list[Reservation]:
        async def get(s: _Session) -> list[Reservation]:
            response = await s.stub.GetReservations(pb.GetReservationsRequest())
            return [reservation_from_pb(r) for r in response.reservations]

        return self._run(get, "reservations")

    # Writes.

    def reserve(self, filters: Mapping[str, str], prio: float) -> str:
        request = pb.CreateReservationRequest(
            filters={"main": pb.Reservation.Filter(filter=dict(filters))}, prio=prio)
        return str(self._rpc("CreateReservation", request, "reserve").reservation.token)

    def poll(self, token: str) -> Reservation:
        """Also keeps the reservation alive (one that nobody polls expires after 60 s)."""
        async def call(s: _Session) -> Reservation:
            response = await s.stub.PollReservation(pb.PollReservationRequest(token=token))
            return reservation_from_pb(response.reservation)

        return self._run(call, f"poll reservation {token}")

    def cancel(self, token: str) -> None:
        with contextlib.suppress(CoordinatorError):
            self._rpc("CancelReservation", pb.CancelReservationRequest(token=token),
                      f"cancel reservation {token}")
            self._reschedule()

    def _reschedule(self) -> None:
        """labgrid 26's scheduler frees a cancelled reservation's place only at the end of its
        pass, after it has looked for free places, so the next waiting reservation gets it
        on the next pass: the coordinator's own, up to 15 s later. A reservation that matches
        no place, made and cancelled at once, runs that pass now."""
        request = pb.CreateReservationRequest(
            filters={"main": pb.Reservation.Filter(filter={"name": NO_PLACE})}, prio=-1e9)
        token = self._rpc("CreateReservation", request, "reschedule").reservation.token
        self._rpc("CancelReservation", pb.CancelReservationRequest(token=token), "reschedule")

    def acquire(self, place: str) -> None:
        self._rpc("AcquirePlace", pb.AcquirePlaceRequest(placename=place), f"acquire {place}")

    def release(self, place: str, *, only_from: str | None = None) -> None:
        """Release `place`; with `only_from`, only if that holder has it (the coordinator
        decides, so a place that changed hands meanwhile is left alone)."""
        request = (pb.ReleasePlaceRequest(placename=place, fromuser=only_from)
                   if only_from else pb.ReleasePlaceRequest(placename=place))
        self._rpc("ReleasePlace", request, f"release {place}")

    def set_tags(self, place: str, tags: Mapping[str, str]) -> None:
        """Merges: an empty value removes the tag."""
        self._rpc("SetPlaceTags", pb.SetPlaceTagsRequest(placename=place, tags=dict(tags)),
                  f"set tags of {place}")

    def set_comment(self, place: str, comment: str) -> None:
        self._rpc("SetPlaceComment", pb.SetPlaceCommentRequest(placename=place, comment=comment),
                  f"set the comment of {place}")

    def create_place(self, name: str) -> None:
        self._rpc("AddPlace", pb.AddPlaceRequest(name=name), f"create place {name}")

    def add_match(self, place: str, pattern: str) -> None:
        self._rpc("AddPlaceMatch", pb.AddPlaceMatchRequest(placename=place, pattern=pattern),
                  f"add match {pattern} to {place}")
