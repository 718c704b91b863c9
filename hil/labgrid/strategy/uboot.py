"""A board that boots through U-Boot and TFTP, as the real boards do: off -> uboot -> board
-> guest.

U-Boot is labgrid's UBootDriver on the board console; the images are staged with labgrid's
TFTPProviderDriver and fetched by U-Boot with `tftpboot`, then `booti`. The board and guest
states are BoardGuestStrategy's own.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import attr
from labgrid.factory import target_factory
from labgrid.strategy import GraphStrategy, never_retry

from hil.errors import ConfigError, InfrastructureError
from hil.labgrid import boot, tftpprobe, uboot_commands
from hil.labgrid.image import image_path
from hil.labgrid.strategy.boardguest import BoardGuestStrategy


@target_factory.reg_driver
@attr.s(eq=False)
class UBootBoardGuestStrategy(BoardGuestStrategy):
    """`kernel`, `initrd` and optionally `dtb` name entries of the environment's `images`;
    without `dtb` the board boots with U-Boot's own DTB (QEMU's, on the virtual board)."""

    bindings: ClassVar[dict[str, Any]] = {
        **BoardGuestStrategy.bindings,
        "uboot": "UBootDriver",
        "tftp": "TFTPProviderDriver",
        # The server is optional: a real lab's TFTP server runs on its own.
        "tftp_server": {"TFTPServerDriver", None},
    }

    kernel: str = attr.ib(default="board-kernel")
    initrd: str = attr.ib(default="board-initrd")
    dtb: str | None = attr.ib(default=None)
    # QEMU user networking's defaults: the board is 10.0.2.15 behind gateway 10.0.2.2.
    ipaddr: str = attr.ib(default="10.0.2.15")
    netmask: str = attr.ib(default="255.255.255.0")
    gatewayip: str = attr.ib(default="10.0.2.2")
    # `auto`: the address the bound TFTPServerDriver listens on or, on a place of a lab, the
    # exporter's host, which runs the TFTP server of a RemoteTFTPProvider.
    serverip: str = attr.ib(default="auto")
    bootargs: str = attr.ib(default="console=ttyAMA0 hil.role=board quiet")
    # The initramfs is large and TFTP is slow under emulation.
    tftp_timeout: int = attr.ib(default=300, converter=int)
    # Ask the lab's TFTP server before powering (hil.labgrid.tftpprobe); off for a server that
    # answers only on the boards' network.
    tftp_probe: bool = attr.ib(default=True)
    # Free RAM where booti unpacks a compressed kernel (as large as the plain Image, clear of
    # the kernel's and initramfs's load addresses). Needed when `kernel` is compressed.
    kernel_comp_addr_r: str | None = attr.ib(default=None)

    def _image(self, key: str) -> str:
        return image_path(self.target, key)

    def _serverip(self) -> str:
        if self.serverip != "auto":
            return self.serverip
        if self.tftp_server is not None:
            return str(self.tftp_server.listen_address()[0])
        try:
            host = self.tftp.get_export_vars().get("host")
        except AttributeError:  # a local TFTPProvider has no host
            host = None
        if not host:
            raise ConfigError("UBootBoardGuestStrategy: serverip auto needs a TFTPServerDriver "
                              "or a RemoteTFTPProvider; give the TFTP server's address instead")
        return str(host)

    def state_off(self) -> None:
        # A U-Boot prompt seen before this power cycle is gone: the next one must be awaited.
        self.target.deactivate(self.uboot)
        super().state_off()

    @GraphStrategy.depends("off")
    def state_uboot(self) -> None:
        self.bring_up_uboot()

    @never_retry
    def bring_up_uboot(self) -> None:
        """Power on and stop U-Boot's autoboot at its prompt; a missing image is named
        before the board is powered."""
        for key in (self.kernel, self.initrd, *([self.dtb] if self.dtb else [])):
            self._image(key)
        found = uboot_commands.problems(uboot_commands.TFTPBoot(
            ipaddr=self.ipaddr, netmask=self.netmask, gatewayip=self.gatewayip,
            serverip=self._serverip(), kernel="-", initrd="-", bootargs=self.bootargs,
            kernel_comp_addr_r=self.kernel_comp_addr_r))
        packed = self._kernel_compression()
        if packed and self.kernel_comp_addr_r is None:
            found.append(f"the kernel {self._image(self.kernel)} is {packed}-compressed: give "
                         "kernel_comp_addr_r (free RAM as large as the unpacked kernel, where "
                         "booti unpacks it) or name the plain Image")
        if found:
            raise ConfigError(f"{type(self).__name__} in the environment file: "
                              + "; ".join(found))
        self.probe_tftp()
        self.target.activate(self.board_console)
        boot.forget_history(self.board_console)
        self.boots["board"] += 1
        self._t0 = time.monotonic()
        self.power.on()
        # UBootDriver interrupts autoboot and waits for the prompt when activated.
        self.target.activate(self.uboot)
        self.timings["uboot_prompt_s"] = time.monotonic() - self._t0

    def _kernel_compression(self) -> str | None:
        with open(self._image(self.kernel), "rb") as f:
            return uboot_commands.compression(f.read(8))

    def probe_tftp(self) -> None:
        """The lab's TFTP server answers, or the run stops here, with the board still off. (A
        TFTPServerDriver of this host is started only while U-Boot loads: nothing to ask.)"""
        if self.tftp_server is not None or not self.tftp_probe:
            return
        serverip = self._serverip()
        why = tftpprobe.probe(serverip)
        if why is not None:
            raise InfrastructureError(
                f"the TFTP server at {serverip}:{tftpprobe.PORT}, where U-Boot would load the "
                f"images from, does not answer ({why}); nothing was powered. Start the lab "
                "host's TFTP server (tftpd-hpa), or give the strategy the serverip where it "
                "runs")

    @GraphStrategy.depends("uboot")
    def state_board(self) -> None:
        self.boot_board()

    @never_retry
    def boot_board(self) -> None:
        """Stage the images, have U-Boot fetch and boot them, and wait for the board shell."""
        if self.tftp_server is not None:
            self.target.activate(self.tftp_server)
        # Asked of the provider while it is only bound, as labgrid wants.
        serverip = self._serverip()
        self.target.activate(self.tftp)
        plan = uboot_commands.TFTPBoot(
            ipaddr=self.ipaddr,
            netmask=self.netmask,
            gatewayip=self.gatewayip,
            serverip=serverip,
            kernel=self.tftp.stage(self._image(self.kernel)),
            initrd=self.tftp.stage(self._image(self.initrd)),
            dtb=self.tftp.stage(self._image(self.dtb)) if self.dtb else None,
            bootargs=self.bootargs,
            # A plain Image needs no unpacking, whatever the option says.
            kernel_comp_addr_r=self.kernel_comp_addr_r if self._kernel_compression() else None,
        )
        t0 = time.monotonic()
        try:
            for cmd in uboot_commands.load_commands(plan):
                self.uboot.run_check(cmd, timeout=self.tftp_timeout)
        finally:
            if self.tftp_server is not None:
                # Loaded (or failed): free the port now rather than at the end of the session.
                self.target.deactivate(self.tftp_server)
        self.timings["tftp_s"] = time.monotonic() - t0
        self.uboot.boot()
        # From here on the console belongs to Linux, not U-Boot.
        self.target.deactivate(self.uboot)
        self.await_board()
        self.timings["power_on_to_board_s"] = time.monotonic() - self._t0
