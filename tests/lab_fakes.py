"""Fake drivers in labgrid's model (as labgrid's driver/fake.py), to drive BoardGuestStrategy
and the pytest plugin without a board.

An environment file imports this module. Each driver writes what happened to it into a shared
event log (`log:`), so a test can tell a power cycle from a board that stayed up.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePath
from typing import Any, ClassVar

import attr
from labgrid.driver import Driver, USBSDMuxDriver, USBStorageDriver
from labgrid.driver.fake import FakeCommandDriver, FakePowerDriver
from labgrid.factory import target_factory
from labgrid.protocol import ConsoleProtocol
from pexpect import TIMEOUT

from hil.errors import ArtifactMissing
from hil.labgrid.boot import ANYTHING


def _log(path: str, event: str) -> None:
    if path:
        with open(path, "a") as f:
            f.write(event + "\n")


@target_factory.reg_driver
@attr.s(eq=False)
class LoggingPowerDriver(FakePowerDriver):  # type: ignore[misc]
    log: str = attr.ib(default="")
    # As VirtualBoardDriver does when its image is missing: it fails to activate.
    missing: str = attr.ib(default="")

    def on_activate(self) -> None:
        if self.missing:
            raise ArtifactMissing(f"board image '{self.missing}' not found")

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
        if patterns[0] == ANYTHING:  # nothing waits unread before the system is switched on
            return len(patterns) - 1, b"", None, None
        if self.boot in lines:
            text = lines[self.boot].encode()
            for i, p in enumerate(patterns):
                if p is not TIMEOUT and (m := re.search(p.encode(), text)):
                    return i, b"booting\n", m, None
        return len(patterns) - 1, b"booting\nsilence\n", None, None


WARN_SPLAT = """\
------------[ cut here ]------------
WARNING: CPU: 0 PID: 57 at drivers/virtio/virtio_mmio.c:412 vm_interrupt+0x9c/0xd0
Modules linked in: vhost_net
CPU: 0 UID: 0 PID: 57 Comm: sh Not tainted 6.12.57 #1
Call trace:
 vm_interrupt+0x9c/0xd0
---[ end trace 0000000000000000 ]---"""


@target_factory.reg_driver
@attr.s(eq=False)
class ScriptedShellDriver(FakeCommandDriver):  # type: ignore[misc]
    """A shell where every command succeeds, except those containing a `hang_on` string (they
    time out, as a wedged console does) or a `fail_on` string (status 1). A command containing
    a `warn_on` string makes the kernel log a WARN; the kernel log answers hil's mark-and-read
    command as busybox dmesg would."""

    log: str = attr.ib(default="")
    hang_on: list[str] = attr.ib(factory=list)
    fail_on: list[str] = attr.ib(factory=list)
    warn_on: list[str] = attr.ib(factory=list)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.kernel_log = ["Booting Linux on physical CPU 0x0000000000 [0x000f0510]"]

    def on_activate(self) -> None:
        # A new boot (labgrid activates the shell after each power-on).
        self.kernel_log = self.kernel_log[:1]

    @Driver.check_active
    def run(self, cmd: str, timeout: float | None = None) -> tuple[list[str], list[str], int]:
        _log(self.log, f"{self.name}: {cmd}")
        if any(s in cmd for s in self.hang_on):
            raise TIMEOUT(f"Timeout of {timeout} seconds exceeded")
        if any(s in cmd for s in self.warn_on):
            self.kernel_log += WARN_SPLAT.splitlines()
        # The look at the kernel log, by the image's program (hil/measure/kernel_log.py).
        if (mark := re.fullmatch(r"(hil-kmsg-mark \S+)", cmd)):
            self.kernel_log.append(mark[1])
            return list(self.kernel_log), [], 0
        return [], [], 1 if any(s in cmd for s in self.fail_on) else 0


@target_factory.reg_driver
@attr.s(eq=False)
class FakeSDMuxDriver(USBSDMuxDriver):  # type: ignore[misc]
    """A USB-SD-Mux without hardware: logs who the card is handed to."""

    bindings: ClassVar[dict[str, Any]] = {}
    log: str = attr.ib(default="")

    def __attrs_post_init__(self) -> None:
        Driver.__attrs_post_init__(self)

    @Driver.check_active
    def set_mode(self, mode: str) -> None:
        _log(self.log, f"sdmux {mode}")


@target_factory.reg_driver
@attr.s(eq=False)
class FakeStorageDriver(USBStorageDriver):  # type: ignore[misc]
    """The card's partition as a directory, written as USBStorageDriver writes (`cp -t` into a
    directory, `cp -T` onto a file, whose directory must exist)."""

    bindings: ClassVar[dict[str, Any]] = {}
    log: str = attr.ib(default="")
    card: str = attr.ib(default="")

    @Driver.check_active
    def write_files(self, sources: list[str], target: PurePath, partition: int,
                    target_is_directory: bool = True) -> None:
        dest = Path(self.card) / target.relative_to(target.root)
        if target_is_directory:
            for s in sources:
                shutil.copyfile(s, dest / Path(s).name)
        else:
            (src,) = sources
            shutil.copyfile(src, dest)  # fails like cp -T when the directory is missing
        _log(self.log, f"write {partition}:{target} {' '.join(Path(s).name for s in sources)}")
