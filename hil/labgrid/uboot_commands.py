"""U-Boot commands that load a board's images over TFTP and boot them (pure: no I/O)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# U-Boot's own DTB: on QEMU's virt machine, the one QEMU generated for this very board.
CONTROL_DTB = "${fdtcontroladdr}"


@dataclass(frozen=True)
class TFTPBoot:
    """What U-Boot fetches and boots. Paths are as the TFTP server is asked for them.

    `dtb` None boots with U-Boot's control DTB (a virtual board's QEMU-made one); a real
    board names the DTB the board image carries for it.
    """

    ipaddr: str
    netmask: str
    gatewayip: str
    serverip: str
    kernel: str
    initrd: str
    bootargs: str
    dtb: str | None = None
    # Where booti unpacks a compressed kernel (U-Boot's `kernel_comp_addr_r`); None: the
    # kernel is a plain Image.
    kernel_comp_addr_r: str | None = None


def _quote(value: str) -> str:
    # Single quotes keep U-Boot's hush from expanding ${...} while setting the variable.
    if "'" in value:
        raise ValueError(f"U-Boot value must not contain a single quote: {value!r}")
    return f"'{value}'"


# `ipaddr: dhcp`: the board's address, netmask and gateway come from the lab's DHCP server.
DHCP = "dhcp"

# A TFTP file name that U-Boot's hush takes as one word, expanding nothing.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._/+:@-]+")
_ADDRESS = re.compile(r"0x[0-9A-Fa-f]+")

# The compressions U-Boot's booti unpacks (image_decomp_type), by their magic numbers.
_COMPRESSIONS = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\x5d\x00\x00": "lzma",
                 b"\x89LZO": "lzo", b"\x04\x22\x4d\x18": "lz4",
                 b"\x28\xb5\x2f\xfd": "zstd"}


def compression(head: bytes) -> str | None:
    """The compression of a kernel whose file starts with `head` (None: a plain Image)."""
    return next((name for magic, name in _COMPRESSIONS.items() if head.startswith(magic)),
                None)


def problems(boot: TFTPBoot) -> list[str]:
    """Values that would not reach U-Boot as one literal word, each named."""
    out = []
    for name in ("ipaddr", "netmask", "gatewayip", "serverip"):
        value = getattr(boot, name)
        if boot.ipaddr == DHCP and name != "serverip":
            continue
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            out.append(f"{name} must be an IPv4 address, got {value!r}")
    for name in ("kernel", "initrd", "dtb"):
        value = getattr(boot, name)
        if value is not None and not _SAFE_NAME.fullmatch(value):
            out.append(f"{name}: TFTP path {value!r} has characters U-Boot's shell would "
                       "interpret (use letters, digits and ._/+:@-)")
    if boot.kernel_comp_addr_r is not None and not _ADDRESS.fullmatch(boot.kernel_comp_addr_r):
        out.append(f"kernel_comp_addr_r must be a hexadecimal address such as 0x50000000, got "
                   f"{boot.kernel_comp_addr_r!r}")
    return out


def load_commands(boot: TFTPBoot) -> list[str]:
    """Commands that fetch the images and leave `bootcmd` ready to boot them.

    The initramfs is fetched last: booti needs its size, which U-Boot only keeps (in
    `filesize`) for the latest transfer. `netretry no`: a TFTP server that does not answer
    fails the transfer once its retries are out, instead of U-Boot retrying for ever.
    A compressed kernel (a third of the plain Image's bytes over TFTP) is unpacked by booti
    into `kernel_comp_addr_r`; it reads the compressed size from `kernel_comp_size`.
    """
    found = problems(boot)
    if found:
        raise ValueError("; ".join(found))
    if boot.ipaddr == DHCP:
        # autoload no: take the lease only; serverip is set after it, as the lab's TFTP
        # server need not be the DHCP server's idea of one.
        network = ["setenv autoload no", "dhcp"]
    else:
        network = [f"setenv ipaddr {boot.ipaddr}", f"setenv netmask {boot.netmask}",
                   f"setenv gatewayip {boot.gatewayip}"]
    cmds = [
        "setenv netretry no",
        *network,
        f"setenv serverip {boot.serverip}",
        f"setenv bootargs {_quote(boot.bootargs)}",
        f"tftpboot ${{kernel_addr_r}} {boot.kernel}",
    ]
    if boot.kernel_comp_addr_r is not None:
        cmds += [f"setenv kernel_comp_addr_r {boot.kernel_comp_addr_r}",
                 "setenv kernel_comp_size ${filesize}"]
    fdt = CONTROL_DTB
    if boot.dtb is not None:
        cmds.append(f"tftpboot ${{fdt_addr_r}} {boot.dtb}")
        fdt = "${fdt_addr_r}"
    cmds += [
        f"tftpboot ${{ramdisk_addr_r}} {boot.initrd}",
        "setenv hil_initrd_size ${filesize}",
        "setenv bootcmd "
        + _quote(f"booti ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{hil_initrd_size}} {fdt}"),
    ]
    return cmds
