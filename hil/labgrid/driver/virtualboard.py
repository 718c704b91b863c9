"""labgrid driver of the virtual board: an emulated GICv2 board on this host."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import attr
from labgrid.driver import QEMUDriver
from labgrid.factory import target_factory
from labgrid.step import step
from labgrid.util.qmp import QMPError

from hil import ports
from hil.errors import ArtifactMissing, InfrastructureError
from hil.labgrid.image import BUILD_HINT, image_path
from hil.labgrid.qemu_start import StartWatch
from hil.measure import costmodel


@target_factory.reg_driver
@attr.s(eq=False)
class VirtualBoardDriver(QEMUDriver):  # type: ignore[misc]
    """An emulated GICv2 board: labgrid's QEMUDriver plus an initramfs and port checks.

    `initrd` names an entry of the environment's `images`; `tcp_ports` lists host ports the
    board's chardevs listen on (the guest console): claimed for this board while it is on
    (hil.ports.Claim) and checked free before power-on, so a second virtual board on the same
    ports fails with a clear message instead of a QEMU error. A QEMU that exits at start, or
    never opens its console, ends power-on with an InfrastructureError (hil.labgrid.qemu_start).
    """

    initrd: str | None = attr.ib(default=None)
    tcp_ports: list[int] = attr.ib(factory=list)
    # Seconds QEMU has to connect its serial console (it does so before the machine starts).
    start_timeout: float = attr.ib(default=60.0, converter=float)
    # Set by QEMUDriver; declared for the type checker only.
    status: int
    _child: Any

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._claims: list[ports.Claim] = []

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
        if self.status:
            return
        claims: list[ports.Claim] = []
        try:
            for port in self.tcp_ports:
                claims.append(ports.Claim(port, "a virtual board's console"))
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError as e:
                        raise InfrastructureError(
                            f"127.0.0.1:{port} is in use ({e.strerror}): another program holds "
                            "it; stop it or give this board other ports in its env file"
                        ) from e
            self._start()
        except BaseException:
            for c in claims:
                c.release()
            raise
        self._claims = claims

    def _start(self) -> None:
        before = self._child
        watch = StartWatch(lambda: None if self._child is before else self._child,
                           timeout=self.start_timeout)
        watch.start()
        try:
            super().on()
        except (OSError, QMPError) as e:  # QEMU exited, or its monitor made no sense
            watch.stop()
            if self._child is before:
                raise
            try:
                code = self._child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._child.kill()  # labgrid leaves it running: nothing would stop it
                self._child.wait()
                raise InfrastructureError(f"the board's QEMU did not answer QMP: {e}") from e
            if watch.timed_out:
                raise InfrastructureError(
                    f"the board's QEMU did not open its serial console within "
                    f"{self.start_timeout:g} s and was stopped") from e
            raise InfrastructureError(
                f"the board's QEMU exited at start (status {code}): its own message is on its "
                "stderr above (a chardev's port taken, a file or option of the board's "
                "extra_args QEMU refused)") from e
        finally:
            watch.stop()

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
        for c in self._claims:
            c.release()
        self._claims = []
