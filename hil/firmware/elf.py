"""Shared-library closure of dynamically linked arm64 binaries, read with binutils' readelf."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hil.errors import InfrastructureError

LIB_DIRS = ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")
_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[(?P<lib>[^\]]+)\]")
_INTERP = re.compile(r"Requesting program interpreter: (?P<interp>[^\]]+)\]")


def parse_needed(readelf_output: str) -> list[str]:
    """DT_NEEDED entries from `readelf -d`."""
    return _NEEDED.findall(readelf_output)


def parse_interpreter(readelf_output: str) -> str | None:
    """PT_INTERP from `readelf -l`, or None for a static binary."""
    m = _INTERP.search(readelf_output)
    return m["interp"] if m else None


def _readelf(flag: str, path: Path) -> str:
    return subprocess.run(
        ["readelf", flag, "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout


def find_library(root: Path, soname: str) -> Path:
    for d in LIB_DIRS:
        p = root / d / soname
        if p.exists():
            return p
    raise InfrastructureError(f"library {soname} is in no unpacked package under {root}")


def closure(root: Path, binaries: list[str], extra: dict[str, Path] | None = None
            ) -> dict[str, Path]:
    """Map of in-image path -> host file for the binaries, their libraries and the loader.

    `binaries` are paths inside the unpacked packages under `root`; `extra` maps in-image
    paths to binaries built elsewhere (the patched QEMU), whose libraries also come from root.
    Libraries land in /lib/aarch64-linux-gnu whatever directory their package used, so the
    image does not depend on the usr-merge state of each package.
    """
    out: dict[str, Path] = {}
    todo: list[Path] = []
    wanted = {b: root / b.lstrip("/") for b in binaries} | (extra or {})
    for b, src in wanted.items():
        if not src.exists():
            raise InfrastructureError(f"{b} is in no unpacked package under {root}")
        out[b] = src
        todo.append(src)
        interp = parse_interpreter(_readelf("-l", src))
        if interp:
            out[interp] = (root / interp.lstrip("/")).resolve()
    seen: set[str] = set()
    while todo:
        for soname in parse_needed(_readelf("-d", todo.pop())):
            if soname in seen:
                continue
            seen.add(soname)
            lib = find_library(root, soname).resolve()
            out[f"/lib/aarch64-linux-gnu/{soname}"] = lib
            todo.append(lib)
    return out
