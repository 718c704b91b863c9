"""NetworkPowerDriver with a deadline and one clear error per failure.

labgrid's network power backends call `requests` without a timeout: a switch that accepts the
connection and never answers (hung firmware, a stopped process) blocks the run forever. Its
failures also surface as a chain of urllib3 exceptions. This driver runs the same backend
with a deadline and raises one InfrastructureError that names the switch (without the
credentials of its URL) and what went wrong.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attr
from labgrid.driver import NetworkPowerDriver
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.step import step

from hil.errors import InfrastructureError
from hil.labgrid.credentials import load_credentials

T = TypeVar("T")


def redact(host: str) -> str:
    """The switch's address without `user:password@`."""
    url = urlsplit(host if "//" in host else f"//{host}")
    if url.password is None and url.username is None:
        return host
    netloc = url.netloc.rpartition("@")[2]
    return url._replace(netloc=netloc).geturl()


def with_credentials(host: str, environ: Mapping[str, str]) -> str:
    """`host` with the client's own credentials, when it carries none.

    A NetworkPowerPort's parameters are public (the coordinator shows them to every client),
    so an exported switch is published without `user:password@`; whoever powers its boards
    brings them: a file named by HIL_POWER_CREDENTIALS (user:password, mode 600, outside the
    repository), or LG_POWER_USER and LG_POWER_PASSWORD. Without either, the URL is used as
    it is and a switch that wants a login answers 401.
    """
    url = urlsplit(host)
    if not url.scheme or url.username is not None:
        return host
    try:
        creds = load_credentials(environ.get("HIL_POWER_CREDENTIALS") or None, environ)
    except ValueError as e:
        if "no credentials" in str(e):
            return host
        raise InfrastructureError(f"power switch credentials: {e}") from None
    except OSError as e:
        raise InfrastructureError(f"power switch credentials: {e}") from None
    # labgrid's backend does not unquote userinfo; load_credentials admits only URL-safe ones.
    return url._replace(netloc=f"{creds.user}:{creds.password}@{url.netloc}").geturl()


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        # urllib3 keeps the socket error in `reason` or an argument, not only as a cause.
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in e.args if isinstance(a, BaseException)]


def describe(error: BaseException) -> str:
    """What a backend's exception means for whoever runs the lab, in one line."""
    causes = list(_causes(error))
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "nothing listens there (connection refused): is the switch running?"
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401:
        return "it refused the credentials (HTTP 401): check the user and password of its URL"
    if status is not None:
        return f"it answered HTTP {status} {getattr(response, 'reason', '')}".rstrip()
    for e in causes:
        if isinstance(e, OSError) and e.strerror:
            return f"cannot talk to it: {e.strerror}"
    return f"{type(error).__name__}: {error}"


class NoAnswer(Exception):
    """The switch did not answer within the deadline."""


def within(timeout: float, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` with a deadline: NoAnswer after `timeout` s, else its value or its error.

    In a daemon thread, as a request without timeout cannot be cancelled: if the switch never
    answers, the thread stays blocked until the connection drops."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args)
        except Exception as e:
            outcome["error"] = e

    worker = threading.Thread(target=run, name="power-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise NoAnswer(f"no answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


@target_factory.reg_driver
@attr.s(eq=False)
class PowerSwitchDriver(NetworkPowerDriver):  # type: ignore[misc]
    """NetworkPowerDriver that gives up after `timeout` seconds with an InfrastructureError.

    `timeout` must exceed the longest an honest switch takes: for hil's own switch, an off
    that escalates to SIGKILL takes its `--grace` period.
    """

    timeout: float = attr.ib(default=30.0, converter=float)

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        where = f"power switch {self.port.model} at {redact(self.port.host)}, outlet " \
                f"{self.port.index}: {what}"
        host = with_credentials(self._host, os.environ)  # its own error says what to fix
        try:
            return within(self.timeout, fn, host, self._port, self.port.index, *args)
        except NoAnswer as e:
            raise InfrastructureError(f"{where}: {e}") from None
        except Exception as e:
            # The chain is urllib3's retries and sockets: the message already says it all.
            raise InfrastructureError(f"{where}: {describe(e)}") from None

    @Driver.check_active
    @step()
    def on(self) -> None:
        self._call("on", self.backend.power_set, True)

    @Driver.check_active
    @step()
    def off(self) -> None:
        self._call("off", self.backend.power_set, False)

    @Driver.check_active
    def get(self) -> bool:
        return bool(self._call("get", self.backend.power_get))
