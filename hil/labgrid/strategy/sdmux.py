"""A board that boots from an SD card written through a USB-SD-Mux: off -> deployed -> board
-> guest.

With the board off, the mux hands the card to the exporter's host (labgrid's USBSDMuxDriver,
`host`), labgrid's USBStorageDriver copies the Debian arm64 kernel, the board's DTB, the board
initramfs and a boot configuration onto the card's boot partition, and the mux hands the card
back to the board (`dut`). Power-on then boots from the card; the board and guest states are
BoardGuestStrategy's own.

The boot configuration is what the board's first loader reads from that partition:
- `extlinux`: U-Boot's distro boot (extlinux/extlinux.conf), for boards whose U-Boot sits in
  flash or on the card already;
- `rpi`: the Raspberry Pi firmware's config.txt and cmdline.txt, which start the kernel
  directly at EL2 with the DTB and initramfs named there.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path, PurePath
from typing import Any, ClassVar

import attr
from labgrid.factory import target_factory
from labgrid.strategy import GraphStrategy, never_retry

from hil.errors import ConfigError
from hil.labgrid.image import image_path
from hil.labgrid.strategy.boardguest import BoardGuestStrategy

BOOT_CONFIGS = ("extlinux", "rpi")
# Names on the card: fixed, so a card written for one run holds nothing stale of another.
KERNEL, INITRD = "Image", "initramfs.cpio.gz"


def boot_files(kind: str, dtb: str, bootargs: str) -> dict[str, str]:
    """The boot configuration files (path on the partition -> content) for `kind`."""
    if kind == "extlinux":
        return {"extlinux/extlinux.conf": "\n".join([
            "default hil", "timeout 0", "label hil",
            f"  kernel /{KERNEL}", f"  initrd /{INITRD}", f"  fdt /{dtb}",
            f"  append {bootargs}", ""])}
    if kind == "rpi":
        return {
            # arm_64bit: the 64-bit kernel; kernel_address is left to the firmware, which
            # enters the kernel at EL2 (armstub8), as KVM needs.
            "config.txt": "\n".join([
                "arm_64bit=1", f"kernel={KERNEL}", f"initramfs {INITRD} followkernel",
                f"device_tree={dtb}", "enable_uart=1", ""]),
            "cmdline.txt": bootargs + "\n",
        }
    raise ConfigError(f"boot_config must be one of {', '.join(BOOT_CONFIGS)}, got {kind!r}")


@target_factory.reg_driver
@attr.s(eq=False)
class SDMuxBoardGuestStrategy(BoardGuestStrategy):
    """`kernel`, `initrd` and `dtb` name entries of the environment's `images`; the DTB is
    written under its own file name."""

    bindings: ClassVar[dict[str, Any]] = {
        **BoardGuestStrategy.bindings,
        "sdmux": "USBSDMuxDriver",
        "storage": "USBStorageDriver",
    }

    kernel: str = attr.ib(default="board-kernel")
    initrd: str = attr.ib(default="board-initrd")
    dtb: str = attr.ib(default="board-dtb")
    boot_config: str = attr.ib(default="extlinux",
                               validator=attr.validators.in_(BOOT_CONFIGS))
    bootargs: str = attr.ib(default="console=ttyAMA0 hil.role=board quiet")
    partition: int = attr.ib(default=1, converter=int)

    @GraphStrategy.depends("off")
    def state_deployed(self) -> None:
        self.deploy()

    @never_retry
    def deploy(self) -> None:
        """Write the card with the board off; a card that cannot be written will not be on
        the next case either."""
        images = [image_path(self.target, k) for k in (self.kernel, self.initrd, self.dtb)]
        dtb_name = Path(images[2]).name
        t0 = time.monotonic()
        self.target.activate(self.sdmux)
        self.sdmux.set_mode("host")
        self.target.activate(self.storage)
        with tempfile.TemporaryDirectory(prefix="hil-sdmux-") as tmp:
            # Fixed names on the card: stage the images under them.
            staged = []
            for src, name in zip(images, (KERNEL, INITRD, dtb_name), strict=True):
                link = Path(tmp) / name
                link.symlink_to(src)
                staged.append(str(link))
            self.storage.write_files(staged, PurePath("/"), self.partition)
            for rel, content in boot_files(self.boot_config, dtb_name, self.bootargs).items():
                f = Path(tmp) / "config" / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(content)
                self.storage.write_files([str(f)], PurePath("/") / rel, self.partition,
                                         target_is_directory=False)
        self.target.deactivate(self.storage)
        self.sdmux.set_mode("dut")
        self.timings["sd_write_s"] = time.monotonic() - t0

    @GraphStrategy.depends("deployed")
    def state_board(self) -> None:
        self.bring_up_board()
