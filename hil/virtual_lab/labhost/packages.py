"""The host packages the lab-host VM needs, installed through hil.firmware.apt."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hil.errors import InfrastructureError
from hil.firmware import apt

# Debian's amd64 6.12 kernel: the image and its modules (xhci, usbserial, ftdi_sio, 9p).
KERNEL_REGEX = r"linux-image-6\.12\.(\d+)\+deb12-amd64-unsigned"
HOST_PACKAGES: dict[str, str | None] = {
    # QEMU 10.0 for x86 (bookworm's own is 7.2).
    "qemu-system-x86": apt.BACKPORTS,
    # systemd-udevd and udevadm, run inside the VM from this host's root.
    "udev": None,
    "busybox-static": None,
    # labgrid's exporter in the VM serves the adapters with it.
    "ser2net": None,
}


@dataclass(frozen=True)
class Kernel:
    """An installed Debian amd64 kernel."""

    release: str  # e.g. 6.12.48+deb12-amd64
    image: Path  # /boot/vmlinuz-RELEASE
    modules: Path  # /lib/modules/RELEASE


def kernel_package() -> str:
    """The newest linux-image-6.12.N+deb12-amd64-unsigned in the archive."""
    pattern = "^" + KERNEL_REGEX.replace("(\\d+)", "[0-9]+") + "$"
    return apt.newest_package(apt.package_names(pattern), KERNEL_REGEX)


def installed_kernel() -> Kernel | None:
    """The newest installed Debian amd64 6.12 kernel with its modules, if any."""
    rx = re.compile(r"6\.12\.(\d+)\+deb12-amd64")
    found = []
    for d in Path("/lib/modules").glob("6.12.*+deb12-amd64"):
        m = rx.fullmatch(d.name)
        image = Path("/boot") / f"vmlinuz-{d.name}"
        if m and image.exists():
            found.append((int(m[1]), Kernel(d.name, image, d)))
    return max(found, key=lambda f: f[0])[1] if found else None


def ensure(log: apt.Log = print) -> Kernel:
    """Install what is missing (QEMU for x86, udev, busybox, the amd64 kernel) and return the
    kernel to boot."""
    kernel = installed_kernel()
    wanted = dict(HOST_PACKAGES)
    if apt.missing_packages(wanted) or kernel is None:
        apt.ensure_sources(log)
        if kernel is None:
            wanted[kernel_package()] = None
        apt.ensure_host_packages(wanted, log)
        kernel = installed_kernel()
    if kernel is None:
        raise InfrastructureError("no Debian amd64 6.12 kernel under /lib/modules after apt")
    return kernel
