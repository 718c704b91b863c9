"""Debian's archive: the apt sources the builds need, host packages, and arm64 downloads.

arm64 packages are resolved by apt itself against an empty dpkg status with
APT::Architecture=arm64, so the full dependency closure comes out as if for a fresh arm64
system, without touching the host's installed packages.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hil.errors import InfrastructureError

SOURCES_FILE = Path("/etc/apt/sources.list.d/hil.sources")
SOURCES = """\
# Written by `hil firmware build`: QEMU 10.0 and Linux 6.12 from bookworm-backports,
# and deb-src for the kernel and QEMU sources.
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
LISTS = Path("/var/lib/apt/lists")
STALE_AFTER_S = 24 * 3600
BACKPORTS = "bookworm-backports"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Deb:
    """One .deb as apt would fetch it."""

    url: str
    filename: str
    size: int
    # "<Type>:<hex>" as apt prints it: apt picks the type (often MD5Sum) and prints none for
    # some archives (debian-security); apt itself verifies SHA256 on download.
    checksum: str

    @property
    def package(self) -> str:
        return self.filename.split("_", 1)[0]

    @property
    def version(self) -> str:
        return self.filename.split("_")[1].replace("%3a", ":")


_URI_LINE = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+)(?: (?P<sum>\w+:[0-9a-f]+))?$")


def parse_print_uris(text: str) -> list[Deb]:
    """Parse `apt-get --print-uris` output into the .debs it would download."""
    debs = []
    for line in text.splitlines():
        m = _URI_LINE.match(line.strip())
        if m:
            debs.append(Deb(m["url"], m["file"], int(m["size"]), m["sum"] or ""))
    return sorted(debs, key=lambda d: d.filename)


def newest_package(names: list[str], pattern: str) -> str:
    """The name matching `pattern` whose embedded version is highest (e.g. linux-image-6.12.N)."""
    rx = re.compile(pattern)
    found = [(tuple(int(x) for x in m.groups()), n) for n in names if (m := rx.fullmatch(n))]
    if not found:
        raise InfrastructureError(f"no package in Debian's archive matches {pattern!r}")
    return max(found)[1]


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        raise InfrastructureError(
            f"`{shlex.join(cmd)}` failed ({p.returncode}):\n{p.stderr.strip()[-2000:]}"
        )
    return p  # type: ignore[no-any-return]


def require_root() -> None:
    if os.geteuid() != 0:
        raise InfrastructureError("the firmware build configures apt: run it as root")


def ensure_sources(log: Log = print) -> None:
    """Add bookworm-backports, deb-src and the arm64 architecture; refresh stale lists."""
    require_root()
    changed = False
    if not SOURCES_FILE.exists() or SOURCES_FILE.read_text() != SOURCES:
        SOURCES_FILE.write_text(SOURCES)
        changed = True
    if "arm64" not in _run(["dpkg", "--print-foreign-architectures"]).stdout.split():
        _run(["dpkg", "--add-architecture", "arm64"])
        changed = True
    marker = LISTS / "hil-updated"
    stale = not marker.exists() or time.time() - marker.stat().st_mtime > STALE_AFTER_S
    if changed or stale:
        log("apt: updating package lists")
        _run(["apt-get", "update", "-q"])
        marker.touch()


def missing_packages(packages: Iterable[str]) -> list[str]:
    """Host packages that dpkg does not have installed (names may carry `:arch`)."""
    packages = list(packages)
    q = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${db:Status-Status}\\n",
         *packages],
        capture_output=True, text=True,
    )
    installed = set()
    for ln in q.stdout.splitlines():
        name, _, status = ln.partition(" ")
        if status == "installed":
            installed.add(name)
            # A plain name means the native (or arch-independent) package.
            for native in (":amd64", ":all"):
                if name.endswith(native):
                    installed.add(name.removesuffix(native))
    return [p for p in packages if p not in installed]


def ensure_host_packages(packages: dict[str, str | None], log: Log = print) -> None:
    """Install host (amd64) packages that are missing; value = target release or None."""
    absent = set(missing_packages(packages))
    for release in sorted({r or "" for r in packages.values()}):
        missing = [p for p, r in packages.items() if (r or "") == release and p in absent]
        if missing:
            log(f"apt: installing {' '.join(missing)}")
            target = ["-t", release] if release else []
            _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *target, *missing])


def package_names(regex: str) -> list[str]:
    out = _run(["apt-cache", "search", "--names-only", regex]).stdout
    return [ln.split(" ", 1)[0] for ln in out.splitlines() if ln]


class Arm64Archive:
    """Resolves and downloads arm64 packages into a cache directory."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.status = cache / "empty-status"

    def _apt(self, packages: list[str], *extra: str, archives: Path | None = None) -> list[str]:
        archives = archives or self.cache
        # The first run on a new machine has no cache folder yet: the status file lives in it.
        self.cache.mkdir(parents=True, exist_ok=True)
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        self.status.touch()
        return [
            "apt-get", "-q", "-y", "--no-install-recommends",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
            "-o", f"Dir::State::status={self.status}",
            "-o", f"Dir::Cache::archives={archives}",
            "-o", "Debug::NoLocking=1",
            "-t", BACKPORTS, *extra, "install", *packages,
        ]

    def resolve(self, packages: list[str]) -> list[Deb]:
        # --print-uris leaves out what the archive directory already holds: ask with an
        # empty one so the answer is the whole closure.
        with tempfile.TemporaryDirectory(prefix="hil-apt-") as empty:
            cmd = self._apt(packages, "--print-uris", archives=Path(empty))
            debs = parse_print_uris(_run(cmd).stdout)
        if not debs:
            raise InfrastructureError(f"apt resolved nothing for {packages}")
        return debs

    def fetch(self, packages: list[str], debs: list[Deb]) -> list[Path]:
        paths = [self.cache / d.filename for d in debs]
        if not all(p.exists() and p.stat().st_size == d.size for p, d in zip(paths, debs, strict=True)):
            _run(self._apt(packages, "--download-only"))
        return paths
