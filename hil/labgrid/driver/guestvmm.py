"""labgrid driver of the guest VMM: the KVM guest's QEMU on any board, through its shell."""

from __future__ import annotations

import contextlib
import shlex
from typing import Any, ClassVar

import attr
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.step import step

from hil.errors import ArtifactMissing, InfrastructureError
from hil.labgrid import vmm
from hil.labgrid.image import BUILD_HINT
from hil.labgrid.place import place_tags


@target_factory.reg_driver
@attr.s(eq=False)
class GuestVMMDriver(Driver):  # type: ignore[misc]
    """Starts and stops the KVM guest's QEMU on a board, through the board's shell."""

    bindings: ClassVar[dict[str, Any]] = {"shell": "CommandProtocol"}

    qemu: str = attr.ib(default=vmm.GuestConfig.qemu)
    kernel: str = attr.ib(default=vmm.GuestConfig.kernel)
    initrd: str = attr.ib(default=vmm.GuestConfig.initrd)
    serial: str = attr.ib(default=vmm.GuestConfig.serial)
    console: str = attr.ib(default=vmm.GuestConfig.console)
    cpus: int = attr.ib(default=vmm.GuestConfig.cpus)
    memory: str = attr.ib(default=vmm.GuestConfig.memory)
    append: str = attr.ib(default=vmm.GuestConfig.append)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # The guest's GIC follows the board's: declared in the env file, or by the place's tag.
        option = None
        if self.target.env:
            with contextlib.suppress(KeyError):  # labgrid takes a default of None as none
                option = self.target.env.config.get_target_option(self.target.name,
                                                                  vmm.GIC_OPTION)
        gic = vmm.board_gic(option, place_tags(self.target))
        self.config = vmm.GuestConfig(
            qemu=self.qemu, kernel=self.kernel, initrd=self.initrd, serial=self.serial,
            console=self.console,
            cpus=self.cpus, memory=self.memory, append=self.append,
            machine=vmm.gic_machine(gic),
        )
        self.running: vmm.GuestConfig | None = None

    def _check(self, cmd: str, timeout: float = 30) -> list[str]:
        out, _, status = self.shell.run(cmd, timeout=timeout)
        if status != 0:
            raise InfrastructureError(f"board: `{cmd}` failed ({status}): {' '.join(out)}")
        return list(out)

    @Driver.check_active
    @step(args=["changes"])
    def start(self, **changes: Any) -> vmm.GuestConfig:
        cfg = self.config.with_changes(**changes)
        # One command for the three: each costs a round trip over the board's console.
        paths = " ".join(shlex.quote(p) for p in (cfg.qemu, cfg.kernel, cfg.initrd))
        missing = [p for p in self._check(f'for p in {paths}; do [ -e "$p" ] || echo "$p"; done') if p]
        if missing:
            raise ArtifactMissing(f"board lacks {', '.join(missing)}: {BUILD_HINT}")
        self.stop()
        self._check(vmm.start_script(cfg))
        self.running = cfg
        return cfg

    @Driver.check_active
    @step()
    def stop(self) -> None:
        self._check(vmm.stop_script())
        self.running = None

    @Driver.check_active
    @step(args=["path", "changes"])
    def dump_dtb(self, path: str, **changes: Any) -> None:
        """Write the device tree the guest would get with `changes` (the guest is stopped:
        QEMU exits after writing it, and needs the tap and the monitor port)."""
        cfg = self.config.with_changes(**changes)
        self.stop()
        cmd = vmm.command(cfg)
        cmd[cmd.index("-M") + 1] = vmm.machine(cfg) + f",dumpdtb={path}"
        self._check(shlex.join(cmd), timeout=60)

    @Driver.check_active
    def log(self) -> str:
        out, _, _ = self.shell.run(f"cat {vmm.LOGFILE} 2>/dev/null")
        return "\n".join(out)

    @Driver.check_active
    def alive(self) -> bool:
        return bool(self.shell.run(f"kill -0 $(cat {vmm.PIDFILE})")[2] == 0)

    @Driver.check_active
    @step(args=["command"])
    def monitor(self, command: str) -> str:
        return "\n".join(self._check(vmm.monitor_script(command)))
