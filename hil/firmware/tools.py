"""Small arm64 programs of our own for the images, compiled from firmware/rootfs/<name>.c.

Where Debian has no package that fits an initramfs (fio links Ceph's and GlusterFS's
libraries), a tool is a single C file, linked statically with Debian's arm64 cross toolchain
(gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: host packages of firmware/images.yaml).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from hil.errors import ConfigError, InfrastructureError

CC = "aarch64-linux-gnu-gcc"
FLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror")
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def source(rootfs: Path, name: str) -> Path:
    if not NAME.fullmatch(name):
        raise ConfigError(f"tool {name!r}: a tool is named like a command (a-z, 0-9, -)")
    path = rootfs / f"{name}.c"
    if not path.is_file():
        raise ConfigError(f"tool {name}: no source {path}")
    return path


def compiler_version() -> str:
    """Part of the images' key: another compiler or C library builds other bytes."""
    try:
        p = subprocess.run([CC, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise InfrastructureError(f"{CC}: {e} (host package gcc-aarch64-linux-gnu)") from e
    return p.stdout.splitlines()[0]


def build(rootfs: Path, names: Iterable[str], out: Path) -> dict[str, Path]:
    """Compile each tool into `out`; name -> binary."""
    built = {}
    for name in names:
        binary = out / name
        p = subprocess.run([CC, *FLAGS, "-o", str(binary), str(source(rootfs, name))],
                           capture_output=True, text=True)
        if p.returncode:
            raise InfrastructureError(f"tool {name} does not build:\n{p.stderr[-2000:]}")
        built[name] = binary
    return built
