"""Fake drivers in labgrid's model (as labgrid's driver/fake.py), to drive BoardGuestStrategy
and the pytest plugin without a board.

An environment file imports this module. Each driver writes what happened to it into a shared
event log (`log:`), so a test can tell a power cycle from a board that stayed up.
"""

from __future__ import annotations

import re
from typing import Any

import attr
from labgrid.driver import Driver
from labgrid.driver.fake import FakeCommandDriver, FakePowerDriver
from labgrid.factory import target_factory
from labgrid.protocol import ConsoleProtocol
from pexpect import TIMEOUT


def _log(path: str, event: str) -> None:
    if path:
        with open(path, "a") as f:
            f.write(event + "\n")


@target_factory.reg_driver
@attr.s(eq=False)
class LoggingPowerDriver(FakePowerDriver):  # type: ignore[misc]
    log: str = attr.ib(default="")

    @Driver.check_active
    def on(self, *args: Any) -> None:
        _log(self.log, "power on")

    @Driver.check_active
    def off(self, *args: Any) -> None:
        _log(self.log, "power off")


@target_factory.reg_driver
@attr.s(eq=False)
class ScriptedConsoleDriver(Driver, ConsoleProtocol):  # type: ignore[misc]
    """A console on which the system comes up (`boot: ready`), panics or stays silent."""

    role: str = attr.ib(default="board")
    boot: str = attr.ib(default="ready")  # ready, panic or hang

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        pass

    def expect(self, patterns: list[Any], timeout: float = -1) -> tuple[int, bytes, Any, Any]:
        lines = {"ready": f"hil: {self.role} ready", "panic": "Kernel panic - not syncing: x"}
        if self.boot in lines:
            text = lines[self.boot].encode()
            for i, p in enumerate(patterns):
                if p is not TIMEOUT and (m := re.search(p.encode(), text)):
                    return i, b"booting\n", m, None
        return len(patterns) - 1, b"booting\nsilence\n", None, None


@target_factory.reg_driver
@attr.s(eq=False)
class ScriptedShellDriver(FakeCommandDriver):  # type: ignore[misc]
    """A shell where every command succeeds, except those containing a `hang_on` string (they
    time out, as a wedged console does) or a `fail_on` string (status 1)."""

    log: str = attr.ib(default="")
    hang_on: list[str] = attr.ib(factory=list)
    fail_on: list[str] = attr.ib(factory=list)

    @Driver.check_active
    def run(self, cmd: str, timeout: float | None = None) -> tuple[list[str], list[str], int]:
        _log(self.log, f"{self.name}: {cmd}")
        if any(s in cmd for s in self.hang_on):
            raise TIMEOUT(f"Timeout of {timeout} seconds exceeded")
        return [], [], 1 if any(s in cmd for s in self.fail_on) else 0
