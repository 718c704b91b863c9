"""The lab's strategy: off -> board (a shell on the board, KVM and vhost-net ready) -> guest.

It holds for every board: power and console come from whatever drivers the environment binds
(labgrid's QEMUDriver for the virtual board, a power switch and a serial port for a real one).

Recovery is labgrid's: a board that cannot be brought to its shell breaks the strategy
(`never_retry`, so labgrid's pytest plugin skips the remaining cases); a case that timed out on
a shell calls `invalidate()`, so the next case starts from `off` with a power cycle; and
`force()` lets `--lg-initial-state` take over a board that is already up.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import attr
from labgrid.consoleloggingreporter import ConsoleLoggingReporter
from labgrid.factory import target_factory
from labgrid.step import step
from labgrid.strategy import GraphStrategy, never_retry

from hil.errors import InfrastructureError, ProductFailure
from hil.labgrid import boot, vmm
from hil.labgrid.shell import Shell

# Checked on the board before it counts as ready; each says what is wrong when it fails.
BOARD_READY = [
    ("test -c /dev/kvm", "/dev/kvm is missing: the board kernel has no KVM (not booted at EL2?)"),
    ("grep -qw vhost_net /proc/modules", "vhost_net is not loaded on the board"),
    ("test -c /dev/net/tun", "/dev/net/tun is missing: the tun module did not load"),
]


class BoardNotReady(ProductFailure):
    """The board booted but lacks what the guest needs."""


class GuestVMMExited(ProductFailure):
    """The guest's VMM exited before the guest reached its prompt."""


def console_log_hint(target: str, console: str) -> str:
    rep = ConsoleLoggingReporter.instance
    if rep is None:
        return "not kept (pass --lg-log DIR)"
    return os.path.join(rep.logpath, f"console_{target}_{console}")


@target_factory.reg_driver
@attr.s(eq=False)
class BoardGuestStrategy(GraphStrategy):  # type: ignore[misc]
    bindings: ClassVar[dict[str, Any]] = {
        "power": "PowerProtocol",
        "board_console": "ConsoleProtocol",
        "board_shell": "CommandProtocol",
        "vmm": "GuestVMMDriver",
        "guest_console": "ConsoleProtocol",
        "guest_shell": "CommandProtocol",
    }

    board_timeout: float = attr.ib(default=90.0, converter=float)
    guest_timeout: float = attr.ib(default=120.0, converter=float)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.timings: dict[str, float] = {}
        self.boots = {"board": 0, "guest": 0}
        self.guest_config: vmm.GuestConfig | None = None

    def _hint(self, console: Any) -> str:
        return console_log_hint(self.target.name, console.name or type(console).__name__)

    def state_off(self) -> None:
        self.power_off()

    @never_retry
    def power_off(self) -> None:
        """A power switch that cannot even be bound (on the virtual board: a missing image or
        QEMU, checked when the driver activates) will not be bound on the next case either."""
        self.target.activate(self.power)
        self.power.off()

    @GraphStrategy.depends("off")
    def state_board(self) -> None:
        self.bring_up_board()

    @never_retry
    def bring_up_board(self) -> None:
        """Power on and wait for a ready board shell; a board that cannot get there once will
        not on the next case either, so the strategy is broken from then on."""
        self.target.activate(self.board_console)
        boot.forget_history(self.board_console)
        self.boots["board"] += 1
        self.power.on()
        self.await_board()

    def await_board(self) -> None:
        """Wait for the booting board's shell and check that it is ready for the guest."""
        self.timings["board_boot_s"] = boot.wait_for_boot(
            self.board_console, "board", self.board_timeout, self._hint(self.board_console))
        self.target.activate(self.board_shell)
        for cmd, problem in BOARD_READY:
            if self.board_shell.run(cmd)[2] != 0:
                raise BoardNotReady(problem)

    @GraphStrategy.depends("board")
    def state_guest(self) -> None:
        self.boot_guest()

    @step(args=["changes"])
    def boot_guest(self, **changes: Any) -> vmm.GuestConfig:
        """(Re)start the guest VMM with `changes` to its configuration and wait for its shell."""
        self.target.deactivate(self.guest_shell)
        # Connect to the guest console first: what the guest prints before is lost.
        self.target.activate(self.guest_console)
        boot.forget_history(self.guest_console)
        self.target.activate(self.vmm)
        self.boots["guest"] += 1
        self.guest_config = self.vmm.start(**changes)
        try:
            self.timings["guest_boot_s"] = boot.wait_for_boot(
                self.guest_console, "guest", self.guest_timeout, self._hint(self.guest_console))
        except (InfrastructureError, ProductFailure) as e:
            if not self.vmm.alive():
                raise GuestVMMExited(f"the guest VMM exited:\n{self.vmm.log()}") from e
            raise
        self.target.activate(self.guest_shell)
        return self.guest_config

    @never_retry
    def force(self, state: str) -> None:
        """Take the board as being in `state` already (labgrid's `--lg-initial-state`): bind
        the drivers of that state without powering, booting or starting anything."""
        path = self.find_abs_path(state)
        for name in ("power", "board_console", "board_shell")[: 1 if state == "off" else 3]:
            self.target.activate(getattr(self, name))
        if "guest" in path:
            for drv in (self.vmm, self.guest_console, self.guest_shell):
                self.target.activate(drv)
            # The running guest is taken to have the board's own settings.
            self.vmm.running = self.guest_config = self.vmm.config
        self.path = path

    def ensure(self, state: str, **guest_changes: Any) -> None:
        """Reach `state` without leaving a deeper state on the same path (guest keeps board).

        `guest_changes` restart the guest with other VMM settings. A guest that a test
        restarted so, or stopped, is started with the board's own settings when the next test
        asks for the guest. The guest is started outside transition(): a guest that fails must
        not take its board down with it (GraphStrategy invalidates the whole path on a failed
        state), so that the board can still be asked whether it answers. Either way the path
        says `guest` once one runs, which is what tells the run to read its kernel log.
        """
        if state == "guest" and "board" in self.path:
            if guest_changes or "guest" not in self.path or (
                    self.vmm.running is None or self.guest_config != self.vmm.config):
                self.path = self.find_abs_path("board")
                self.boot_guest(**guest_changes)
                self.path = self.find_abs_path("guest")
        elif state not in self.path:
            self.transition(state)

    def shell(self, where: str) -> Shell:
        drv = {"board": self.board_shell, "guest": self.guest_shell}[where]
        return Shell(where, drv)
