"""labgrid drivers of the lab: the virtual board and the guest VMM on any board."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
from typing import Any, ClassVar

import attr
from labgrid.driver import QEMUDriver
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.step import step

from hil import costmodel
from hil.errors import ArtifactMissing, InfrastructureError
from hil.lab import places, vmm

BUILD_HINT = "run `hil firmware build` (or set HIL_IMAGES to a built image directory)"


def image_path(target: Any, key: str) -> str:
    """The file of the environment's image `key`, which must exist."""
    try:
        path: str = target.env.config.get_image_path(key)
    except KeyError as e:
        raise ArtifactMissing(f"environment has no image '{key}' under images:") from e
    if not os.path.exists(path):
        raise ArtifactMissing(f"board image '{key}' not found at {path}: {BUILD_HINT}")
    return path


@target_factory.reg_driver
@attr.s(eq=False)
class VirtualBoardDriver(QEMUDriver):  # type: ignore[misc]
    """An emulated GICv2 board: labgrid's QEMUDriver plus an initramfs and port checks.

    `initrd` names an entry of the environment's `images`; `tcp_ports` lists host ports the
    board's chardevs listen on (the guest console), checked free before power-on so a second
    virtual board fails with a clear message instead of a QEMU error.
    """

    initrd: str | None = attr.ib(default=None)
    tcp_ports: list[int] = attr.ib(factory=list)
    # Set by QEMUDriver; declared for the type checker only.
    status: int
    _child: Any

    def _image(self, key: str) -> str:
        return image_path(self.target, key)

    def get_qemu_base_args(self) -> list[str]:
        qemu = self.target.env.config.get_tool(self.qemu_bin)
        if not os.path.isabs(qemu) or not os.access(qemu, os.X_OK):
            raise ArtifactMissing(
                f"QEMU binary for tool '{self.qemu_bin}' not found ({qemu}): {BUILD_HINT}"
            )
        if self.kernel:
            self._image(self.kernel)
        cmd: list[str] = super().get_qemu_base_args()
        if self.initrd:
            cmd += ["-initrd", self._image(self.initrd)]
        # The cost-model mode is the board's declared option (checked with the env file).
        options = self.target.env.config.data["targets"][self.target.name].get("options") or {}
        return cmd + costmodel.qemu_args(options.get(costmodel.OPTION))

    @step()
    def on(self) -> None:
        if not self.status:
            for port in self.tcp_ports:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError as e:
                        raise InfrastructureError(
                            f"127.0.0.1:{port} is in use ({e.strerror}): another virtual board "
                            "is running; stop it or give this one other ports in its env file"
                        ) from e
        super().on()

    @step()
    def off(self) -> None:
        """Stop QEMU with SIGTERM rather than QMP `quit`.

        QEMU writes the console from its vCPU thread and blocks once nobody reads the socket
        (after a panic, or a test that stopped reading): QMP then never answers. A signal is
        handled regardless, as pulling the plug of a real board is.
        """
        if not self.status:
            return
        child = self._child
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        self._child = None
        self.status = 0


@target_factory.reg_driver
@attr.s(eq=False)
class GuestVMMDriver(Driver):  # type: ignore[misc]
    """Starts and stops the KVM guest's QEMU on a board, through the board's shell."""

    bindings: ClassVar[dict[str, Any]] = {"shell": "CommandProtocol"}

    qemu: str = attr.ib(default=vmm.GuestConfig.qemu)
    kernel: str = attr.ib(default=vmm.GuestConfig.kernel)
    initrd: str = attr.ib(default=vmm.GuestConfig.initrd)
    serial: str = attr.ib(default=vmm.GuestConfig.serial)
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
        gic = vmm.board_gic(option, places.place_tags(self.target))
        self.config = vmm.GuestConfig(
            qemu=self.qemu, kernel=self.kernel, initrd=self.initrd, serial=self.serial,
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
        missing = [p for p in (cfg.qemu, cfg.kernel, cfg.initrd)
                   if self.shell.run(f"test -e {shlex.quote(p)}")[2] != 0]
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
