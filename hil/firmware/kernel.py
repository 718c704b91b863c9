"""The guest kernel: Debian's Linux 6.12 source with firmware/kernel/patches, built for arm64.

The source comes from the linux-source-6.12 package. It is unpacked once into a git tree under
<store>/work, committed as `pristine`; each build resets the tree to that commit and applies
the patches with `git am`, so only the files the patches touch get new timestamps and a
rebuild after a patch change recompiles little. The build directory (O=) is kept as well.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, InfrastructureError

from . import apt
from .cache import Store, digest, sha256_file

REPO = Path(__file__).resolve().parents[2]
KERNEL = REPO / "firmware" / "kernel"
PATCHES = KERNEL / "patches"
FRAGMENT = KERNEL / "virtual-guest.config"
# The debug variant: the same kernel with lockdep, atomic-sleep checks, DEBUG_SHIRQ and kmemleak,
# for the loops of testcases/test_debug_kernel.py.
DEBUG_FRAGMENT = KERNEL / "debug.config"
SOURCE_PACKAGE = "linux-source-6.12"
TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
ARTIFACT = "guest-kernel"
DEBUG_ARTIFACT = "guest-kernel-debug"
CROSS = "aarch64-linux-gnu-"
JOBS = 2
HOST_PACKAGES: dict[str, str | None] = {
    p: None
    for p in (
        SOURCE_PACKAGE, "gcc-aarch64-linux-gnu", "gcc", "libc6-dev", "make", "bc", "bison",
        "flex", "libssl-dev", "libelf-dev", "xz-utils", "git", "perl", "python3",
        "device-tree-compiler",  # dt_binding_check of the binding patch
    )
}
# Committer of the patched tree: git am needs one, and a fixed one keeps the tree stable.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "hil build", "GIT_AUTHOR_EMAIL": "hil@example.invalid",
    "GIT_COMMITTER_NAME": "hil build", "GIT_COMMITTER_EMAIL": "hil@example.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}
Log = Callable[[str], None]

_PATCH_NAME = re.compile(r"\d{4}-[A-Za-z0-9._-]+\.patch")
_FRAGMENT_SET = re.compile(r"(CONFIG_[A-Za-z0-9_]+)=(.*)")
_FRAGMENT_UNSET = re.compile(r"# (CONFIG_[A-Za-z0-9_]+) is not set")


# --- pure decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The kernel source as installed: identified without hashing the 150 MB tarball."""

    package: str
    version: str
    tarball_size: int

    @property
    def identity(self) -> str:
        return f"{self.package} {self.version} {self.tarball_size}"


@dataclass(frozen=True)
class KeyInputs:
    source: Source
    toolchain: str
    patches: list[Path]
    fragment: Path
    module: Path
    # Fragments merged after `fragment` (the debug variant's); none for the plain kernel.
    extra: tuple[Path, ...] = ()


def key_parts(inputs: KeyInputs) -> list[str | bytes | Path]:
    """Everything the guest kernel depends on, in a fixed order."""
    return [
        "guest-kernel 1",
        inputs.source.identity,
        inputs.toolchain,
        f"{len(inputs.patches)} patches",
        *inputs.patches,
        inputs.fragment,
        *inputs.extra,
        inputs.module,
    ]


def cache_key(inputs: KeyInputs) -> str:
    return digest(key_parts(inputs))


def patch_files(directory: Path) -> list[Path]:
    """The series in order: every *.patch, named NNNN-subject.patch and numbered 1..n."""
    if not directory.is_dir():
        return []
    patches = sorted(directory.glob("*.patch"))
    for i, p in enumerate(patches, 1):
        if not _PATCH_NAME.fullmatch(p.name) or int(p.name[:4]) != i:
            raise ConfigError(f"{p}: patches must be named {i:04d}-<subject>.patch, in sequence")
    return patches


def parse_fragment(text: str) -> dict[str, str | None]:
    """CONFIG_ lines of a fragment: value as written, None for `# CONFIG_X is not set`."""
    wanted: dict[str, str | None] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := _FRAGMENT_UNSET.fullmatch(line):
            wanted[m[1]] = None
        elif m := _FRAGMENT_SET.fullmatch(line):
            if m[2] in ("", "n"):
                raise ConfigError(f"line {n}: write `# {m[1]} is not set` instead of {line!r}")
            wanted[m[1]] = m[2]
        elif line and not line.startswith("#"):
            raise ConfigError(f"line {n}: not a config line: {line!r}")
    return wanted


def parse_config(text: str) -> dict[str, str]:
    """The options a .config sets (unset ones are absent)."""
    return {m[1]: m[2] for line in text.splitlines() if (m := _FRAGMENT_SET.fullmatch(line))}


def config_mismatches(wanted: Mapping[str, str | None], config: Mapping[str, str]) -> list[str]:
    """One message per fragment line that Kconfig did not honour (dependencies, typos)."""
    out = []
    for name, value in wanted.items():
        got = config.get(name)
        if got != value:
            want = "not set" if value is None else value
            out.append(f"{name}: wanted {want}, got {'not set' if got is None else got}")
    return out


def tree_is_current(marker: str | None, source: Source) -> bool:
    """Whether an unpacked tree (whose marker file says `marker`) matches the source."""
    return marker is not None and marker.strip() == source.identity


def patch_list(patches: Iterable[Path]) -> str:
    """patches.txt: `<sha256>  <name>` per patch, in order, like sha256sum's output."""
    return "".join(f"{sha256_file(p)}  {p.name}\n" for p in patches)


# --- host ------------------------------------------------------------------------------------


def _ensure_host(log: Log) -> None:
    if apt.missing_packages(HOST_PACKAGES):
        apt.ensure_sources(log)
        apt.ensure_host_packages(HOST_PACKAGES, log)


def installed_source() -> Source:
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", SOURCE_PACKAGE],
                       capture_output=True, text=True)
    if q.returncode != 0 or not q.stdout or not TARBALL.is_file():
        raise InfrastructureError(f"{SOURCE_PACKAGE} is not installed ({TARBALL} missing)")
    return Source(SOURCE_PACKAGE, q.stdout.strip(), TARBALL.stat().st_size)


def toolchain_version() -> str:
    q = subprocess.run([f"{CROSS}gcc", "--version"], capture_output=True, text=True)
    if q.returncode != 0:
        raise InfrastructureError(f"{CROSS}gcc does not run: {q.stderr.strip()}")
    return q.stdout.splitlines()[0]


def _run(cmd: list[str], log_file: Path, cwd: Path | None = None,
         env: Mapping[str, str] | None = None) -> None:
    with log_file.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "LC_ALL": "C", **(env or {})})
    if p.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(True)[-30:])
        raise InfrastructureError(f"`{' '.join(cmd)}` failed ({p.returncode}), "
                                  f"log {log_file}:\n{tail}")


# --- build -----------------------------------------------------------------------------------


def _prepare_tree(work: Path, source: Source, log: Log, log_file: Path) -> Path:
    """A git tree of the pristine source under work/src, unpacked only when the source changes."""
    src, marker = work / "src", work / "source-id"
    if src.is_dir() and tree_is_current(marker.read_text() if marker.exists() else None, source):
        return src
    log(f"kernel: unpacking {TARBALL.name} ({source.version})")
    shutil.rmtree(work, ignore_errors=True)
    src.mkdir(parents=True)
    _run(["tar", "-xf", str(TARBALL), "-C", str(src), "--strip-components=1"], log_file)
    git = ["git", "-C", str(src)]
    _run([*git, "init", "-q"], log_file)
    # The tree's .gitignore ends with `/*`: force-add everything.
    _run([*git, "add", "-A", "-f"], log_file)
    _run([*git, "commit", "-q", "-m", f"pristine {source.identity}"], log_file, env=GIT_ENV)
    _run([*git, "tag", "-f", "pristine"], log_file)
    marker.write_text(source.identity + "\n")
    return src


def _apply_patches(src: Path, patches: list[Path], log_file: Path) -> None:
    git = ["git", "-C", str(src)]
    if (src / ".git" / "rebase-apply").exists():
        _run([*git, "am", "--abort"], log_file)
    _run([*git, "reset", "-q", "--hard", "pristine"], log_file)
    _run([*git, "clean", "-q", "-fdx"], log_file)
    if patches:
        _run([*git, "am", "-q", *map(str, patches)], log_file, env=GIT_ENV)


def _configure(src: Path, out: Path, fragments: list[Path], log_file: Path) -> dict[str, str]:
    make = ["make", "-C", str(src), f"O={out}", "ARCH=arm64", f"CROSS_COMPILE={CROSS}"]
    _run([*make, "allnoconfig"], log_file)
    _run([str(src / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
          str(out / ".config"), *map(str, fragments)], log_file, env={"ARCH": "arm64"})
    _run([*make, "olddefconfig"], log_file)
    config = parse_config((out / ".config").read_text())
    for fragment in fragments:
        bad = config_mismatches(parse_fragment(fragment.read_text()), config)
        if bad:
            raise ConfigError(f"{fragment}: Kconfig did not take:\n  " + "\n  ".join(bad))
    return config


def _build(dest: Path, work: Path, inputs: KeyInputs, log: Log) -> dict[str, Any]:
    t0 = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    log_file = work / "build.log"
    log_file.write_text("")
    src = _prepare_tree(work, inputs.source, log, log_file)
    _apply_patches(src, inputs.patches, log_file)
    out = work / "out"
    out.mkdir(exist_ok=True)
    _configure(src, out, [inputs.fragment, *inputs.extra], log_file)
    log(f"kernel: make -j{JOBS} Image ({len(inputs.patches)} patches), log {log_file}")
    _run(["nice", "-n", "10", "make", "-C", str(src), f"O={out}", "ARCH=arm64",
          f"CROSS_COMPILE={CROSS}", f"-j{JOBS}", "Image"], log_file)
    image = out / "arch/arm64/boot/Image"
    if image.read_bytes()[0x38:0x3C] != b"ARM\x64":
        raise InfrastructureError(f"{image} is not an arm64 Image")
    shutil.copyfile(image, dest / "Image")
    shutil.copyfile(out / ".config", dest / ".config")
    (dest / "patches.txt").write_text(patch_list(inputs.patches))
    seconds = time.monotonic() - t0
    log(f"kernel: built in {seconds:.0f} s, Image {image.stat().st_size / 1e6:.1f} MB")
    return {
        "source": {"package": inputs.source.package, "version": inputs.source.version,
                   "tarball_size": inputs.source.tarball_size},
        "toolchain": inputs.toolchain,
        "patches": {p.name: sha256_file(p) for p in inputs.patches},
        "fragment": {"name": inputs.fragment.name, "sha256": sha256_file(inputs.fragment)},
        "extra_fragments": {f.name: sha256_file(f) for f in inputs.extra},
        "config_sha256": sha256_file(dest / ".config"),
        "build_seconds": round(seconds, 1),
    }


def work_dir(store: Store, artifact: str = ARTIFACT) -> Path:
    """The reusable tree of the last build: `src` (patches applied as commits) and `out` (O=).
    Each variant has its own, so neither rebuilds the other's objects."""
    return store.root / "work" / artifact


def build_guest_kernel(store: Store, log: Log = print, debug: bool = False) -> Path:
    """Build (or find in the cache) the patched guest kernel, or its debug variant; publishes
    images/guest-kernel (images/guest-kernel-debug)."""
    _ensure_host(log)
    artifact = DEBUG_ARTIFACT if debug else ARTIFACT
    inputs = KeyInputs(
        source=installed_source(),
        toolchain=toolchain_version(),
        patches=patch_files(PATCHES),
        fragment=FRAGMENT,
        module=Path(__file__),
        extra=(DEBUG_FRAGMENT,) if debug else (),
    )
    key = cache_key(inputs)
    work = work_dir(store, artifact)
    return store.ensure(artifact, key, lambda d: _build(d, work, inputs, log), log)


def main() -> int:
    t0 = time.monotonic()
    try:
        path = build_guest_kernel(Store(), debug=sys.argv[1:] == ["--debug"])
    except InfrastructureError as e:
        print(f"kernel: {e}", file=sys.stderr)
        return 1
    print(f"{path} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
