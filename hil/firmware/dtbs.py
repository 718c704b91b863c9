"""The real boards' device trees in the board image, taken from Debian's kernel package.

Each target of an environment file names its DTB as `options.dtb`: a path relative to the
package's DTB directory (`usr/lib/linux-image-<release>/`), e.g. `broadcom/bcm2711-rpi-4-b.dtb`.
The board image carries them at `dtbs/<vendor>/<name>.dtb`, so a board boots exactly the
kernel and device tree that were qualified together.
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from labgrid.util.yaml import load
from yaml import YAMLError

from hil.errors import ConfigError

from .cache import sha256_file

DIRECTORY = "dtbs"


@dataclass(frozen=True, order=True)
class Request:
    """One board's DTB and where that board was declared (for messages)."""

    dtb: str
    board: str
    source: str


def dtb_problem(dtb: Any) -> str | None:
    """Why `dtb` cannot name a file of the package's DTB directory, or None."""
    if not isinstance(dtb, str) or not dtb:
        return f"dtb must be a path such as broadcom/bcm2711-rpi-4-b.dtb, not {dtb!r}"
    p = PurePosixPath(dtb)
    # An absolute path or '..' would copy from outside the kernel package into the image.
    if p.is_absolute() or ".." in p.parts or len(p.parts) != 2 or p.suffix != ".dtb":
        return f"dtb {dtb!r} must be <vendor>/<name>.dtb, relative to the kernel's DTB directory"
    return None


def requests(env: Any, source: str) -> list[Request]:
    """The DTBs a parsed environment's targets name; targets without `options.dtb` (the
    virtual board) need none."""
    targets = env.get("targets") if isinstance(env, dict) else None
    if not isinstance(targets, dict):
        raise ConfigError(f"{source}: no 'targets:' mapping to take board DTBs from")
    out = []
    for board, target in targets.items():
        options = (target or {}).get("options") if isinstance(target, dict) else None
        if not isinstance(options, dict) or "dtb" not in options:
            continue
        problem = dtb_problem(options["dtb"])
        if problem:
            raise ConfigError(f"{source}: target '{board}': options.{problem}")
        out.append(Request(options["dtb"], str(board), source))
    return sorted(out)


def load_requests(paths: Iterable[Path], repo: Path) -> list[Request]:
    out = []
    for path in paths:
        source = str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
        try:
            data = load(path.read_text())
        except (OSError, YAMLError) as e:
            raise ConfigError(f"{source}: cannot read the boards' DTB names ({e})") from e
        out += requests(data, source)
    return out


def shipped(dtb_dir: Path) -> set[str]:
    """The DTBs under a kernel package's DTB directory, as <vendor>/<name>.dtb."""
    return {p.relative_to(dtb_dir).as_posix() for p in dtb_dir.rglob("*.dtb")}


def missing(wanted: list[Request], available: set[str], package: str) -> list[str]:
    """A message per requested DTB the kernel package does not ship, naming the board, the
    file and the nearest names that it does ship."""
    out = []
    for r in wanted:
        if r.dtb in available:
            continue
        near = difflib.get_close_matches(r.dtb, sorted(available), n=3)
        hint = f" (it has {', '.join(near)})" if near else ""
        out.append(f"board '{r.board}' ({r.source}): {package} ships no {r.dtb}{hint}")
    return out


def install(wanted: list[Request], dtb_dir: Path, package: str, out: Path) -> dict[str, str]:
    """Copy the requested DTBs to out/dtbs/; their sha256 sums, for the manifest."""
    problems = missing(wanted, shipped(dtb_dir) if dtb_dir.is_dir() else set(), package)
    if problems:
        raise ConfigError("; ".join(problems))
    sums = {}
    for dtb in sorted({r.dtb for r in wanted}):
        dest = out / DIRECTORY / dtb
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dtb_dir / dtb, dest)
        sums[dtb] = sha256_file(dest)
    return sums
