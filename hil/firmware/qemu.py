"""QEMU 10.0.2 with firmware/qemu/patches: the device half of firmware/PROTOCOL.md.

The source is Debian's `qemu_10.0.2+ds.orig.tar.xz` from bookworm-backports, fetched with
`apt-get source --download-only` (the archive answers 404 for the .dsc and the debian.tar.xz,
so apt exits non-zero: only the tarball counts). Its sha256 is pinned in
firmware/qemu/source.sha256; the tarball is hashed once after the download and a stamp next
to it remembers that, so cache keys use the pinned value and a cache hit hashes nothing big.

As for the guest kernel, the tarball is unpacked once into a git tree under <store>/work/qemu
(committed and tagged `pristine`, together with empty placeholders for the edk2 `*.fd.bz2`
blobs that the `+ds` tarball leaves out but meson still lists), each build resets it and
applies the patches with `git am`, and the build directories are kept, so a rebuild after a
patch change recompiles only what the patches touch.

Two builds of the same tree:
- `qemu-arm64` (`build_qemu`): cross build for the arm64 board, with KVM. The meson cross file
  is the one `configure --cross-prefix=aarch64-linux-gnu-` writes; it uses
  `aarch64-linux-gnu-pkg-config` (pkgconf's cross personality: only the arm64 multiarch
  .pc files). glib and slirp come from multiarch `:arm64` dev packages; `libfdt-dev:arm64`
  cannot be installed beside the amd64 one, so it is unpacked into a sysroot (dpkg -x) and
  passed with --extra-cflags/--extra-ldflags. The binary needs libfdt1, libglib2.0-0 and
  libslirp0 at run time (the board image carries them for Debian's QEMU).
- `qemu-x86` (`build_qemu_x86`): native build for this machine, to run QEMU's own qtests
  (`run_qtests`) and to boot the guest under TCG.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, InfrastructureError

from . import apt
from .cache import Store, digest, sha256_file
from .kernel import GIT_ENV, patch_list
from .kernel import patch_files as patch_files

REPO = Path(__file__).resolve().parents[2]
QEMU = REPO / "firmware" / "qemu"
PATCHES = QEMU / "patches"
PIN_FILE = QEMU / "source.sha256"
SOURCE_SPEC = "qemu/bookworm-backports"
VERSION = "10.0.2"
CROSS = "aarch64-linux-gnu-"
JOBS = 2
PYTHON = "/usr/bin/python3"  # configure must not pick up another python3 on PATH
BINARY = "qemu-system-aarch64"
Log = Callable[[str], None]

# Meson lists these under pc-bios/ whenever an arm/aarch64 target is built; the +ds tarball
# does not ship them. Empty bzip2 streams let meson unpack them to empty files; nothing here
# installs or boots them.
EDK2_BLOBS = tuple(
    f"edk2-{name}.fd.bz2"
    for name in (
        "aarch64-code", "arm-code", "arm-vars", "riscv-code", "riscv-vars", "i386-code",
        "i386-secure-code", "i386-vars", "x86_64-code", "x86_64-secure-code",
        "loongarch64-code", "loongarch64-vars",
    )
)
COMMON_OPTIONS = (
    f"--python={PYTHON}",
    "--target-list=aarch64-softmmu",
    "--without-default-features",
    "--enable-tcg",
    "--enable-slirp",
    "--enable-fdt=system",
    "--enable-vhost-net",
    "--enable-vhost-kernel",
    "--disable-docs",
    "--disable-install-blobs",
)
SYSROOT_DEBS = ("libfdt-dev:arm64", "libfdt1:arm64")
HOST_PACKAGES: dict[str, str | None] = {
    # meson >= 1.5 and pycotap: the +ds tarball has no python/wheels to fall back on.
    "meson": apt.BACKPORTS,
    "python3-pycotap": apt.BACKPORTS,
    **{
        p: None
        for p in (
            "gcc", "gcc-aarch64-linux-gnu", "binutils-aarch64-linux-gnu", "libc6-dev",
            "ninja-build", "pkgconf", "python3", "python3-venv", "bzip2", "xz-utils", "git",
            "flex", "bison", "dpkg-dev",
            "libglib2.0-dev", "libslirp-dev", "libfdt-dev", "libpixman-1-dev",
            "libglib2.0-dev:arm64", "libslirp-dev:arm64", "libpixman-1-dev:arm64",
        )
    },
}
# QEMU's qtests that cover virtio-mmio and the virt board (meson test names, suite
# qtest-aarch64): virtio-mmio-irq-lines-test comes with the patches; qos-test drives virtio
# devices through arm/virt's virtio-mmio transport; qom-test and device-introspect-test
# instantiate every machine and device; boot-serial-test boots the virt board.
DEFAULT_QTESTS = ("virtio-mmio-irq-lines-test", "qos-test", "qom-test", "device-introspect-test",
                  "boot-serial-test")
# The qtests start machines with their default NICs and firmware, whose ROMs the +ds tarball
# leaves out: Debian's builds of them, linked into the build tree's data directory.
QTEST_PACKAGES: dict[str, str | None] = {"ipxe-qemu": None, "seabios": None}
QTEST_ROM_DIRS = (Path("/usr/lib/ipxe/qemu"), Path("/usr/share/seabios"))
BUNDLE_DATADIR = Path("qemu-bundle/usr/local/share/qemu")

_PIN = re.compile(r"(?P<sha>[0-9a-f]{64}) [ *](?P<name>\S+)")


# --- pure decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """The source tarball as pinned in firmware/qemu/source.sha256."""

    sha256: str
    filename: str


@dataclass(frozen=True)
class Target:
    name: str
    artifact: str
    cross: bool

    @property
    def strip(self) -> str:
        return f"{CROSS}strip" if self.cross else "strip"

    @property
    def elf_machine(self) -> str:
        return "aarch64" if self.cross else "x86_64"


ARM64 = Target("arm64", "qemu-arm64", cross=True)
X86 = Target("x86", "qemu-x86", cross=False)


def parse_pin(text: str) -> Pin:
    """`<sha256>  <file>` (sha256sum's format); blank lines and # comments are ignored."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1 or not (m := _PIN.fullmatch(lines[0])):
        raise ConfigError(f"{PIN_FILE}: expected one line `<sha256>  <tarball>`, got {lines!r}")
    return Pin(m["sha"], m["name"])


def read_pin(path: Path = PIN_FILE) -> Pin:
    if not path.is_file():
        raise ConfigError(f"{path} is missing: it pins the sha256 of the QEMU source tarball")
    return parse_pin(path.read_text())


def stamp_text(pin: Pin, size: int, mtime_ns: int) -> str:
    """What the stamp next to a verified tarball says: valid while the file is unchanged."""
    return f"{pin.sha256} {pin.filename} {size} {mtime_ns}\n"


def stamp_is_current(stamp: str | None, pin: Pin, size: int, mtime_ns: int) -> bool:
    return stamp is not None and stamp == stamp_text(pin, size, mtime_ns)


def check_sha256(pin: Pin, actual: str) -> None:
    if actual != pin.sha256:
        raise InfrastructureError(
            f"{pin.filename} has sha256 {actual}, but {PIN_FILE} pins {pin.sha256}: the "
            f"archive now serves a different QEMU source. Check it, then update the pin "
            f"(and the patches, if they no longer apply)."
        )


def configure_options(target: Target, sysroot: Path | None) -> list[str]:
    """configure's command line after the script itself."""
    opts = list(COMMON_OPTIONS)
    if target.cross:
        if sysroot is None:
            raise ValueError("the cross build needs the libfdt sysroot")
        opts += [
            f"--cross-prefix={CROSS}",
            "--enable-kvm",
            f"--extra-cflags=-I{sysroot}/usr/include",
            f"--extra-ldflags=-L{sysroot}/usr/lib/aarch64-linux-gnu",
        ]
    return opts


@dataclass(frozen=True)
class KeyInputs:
    target: Target
    pin: Pin
    toolchain: str
    libraries: str
    patches: list[Path]
    module: Path


def key_parts(inputs: KeyInputs) -> list[str | bytes | Path]:
    """Everything a QEMU build depends on, in a fixed order (no paths of this machine)."""
    return [
        "qemu 1",
        inputs.target.name,
        inputs.pin.sha256,
        inputs.pin.filename,
        " ".join(configure_options(inputs.target, Path("/SYSROOT"))),
        inputs.toolchain,
        inputs.libraries,
        f"{len(inputs.patches)} patches",
        *inputs.patches,
        inputs.module,
    ]


def cache_key(inputs: KeyInputs) -> str:
    return digest(key_parts(inputs))


def series_id(patches: Iterable[Path]) -> str:
    """Identifies an applied series in the work tree (names and contents)."""
    return digest(["series", *patches])


def elf_machine(header: bytes) -> str | None:
    """e_machine of a little-endian ELF64 header: 'aarch64', 'x86_64', or None."""
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return None
    return {0xB7: "aarch64", 0x3E: "x86_64"}.get(int.from_bytes(header[18:20], "little"))


def rom_links(datadir: Path, sources: Iterable[Path]) -> dict[Path, Path]:
    """Symlinks to make in the build's data directory: first source of each name wins."""
    links: dict[Path, Path] = {}
    for f in sources:
        links.setdefault(datadir / f.name, f)
    return links


# GLib test paths (`-p`) a qtest is limited to. qom-test starts every machine of the target
# (91 s of a 111 s run here); the series changes one machine, virt (its property, the GIC's
# size, the DT), and the virtio-mmio device, whose new property device-introspect-test reads.
# One path only: GLib prints a TAP plan per -p, and meson rejects several plans. The machine is
# named by its version (`virt` is an alias): a new pin that renames it makes qom-test SKIP,
# which fails the run (QTEST_PASSED).
QTEST_PATHS: dict[str, tuple[str, ...]] = {"qtest-aarch64/qom-test": ("/aarch64/qom/virt-10.0",)}


def meson_runs(tests: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """(meson test names, arguments for the tests) of each `meson test` run: the tests that
    QTEST_PATHS limits run on their own, since meson passes --test-args to every test."""
    names = qtest_names(tests)
    free = [n for n in names if n not in QTEST_PATHS]
    runs: list[tuple[list[str], list[str]]] = [(free, [])] if free else []
    for n in names:
        if n in QTEST_PATHS:
            runs.append(([n], [a for path in QTEST_PATHS[n] for a in ("-p", path)]))
    return runs


def qtest_names(tests: Sequence[str]) -> list[str]:
    """meson test names in the qtest-aarch64 suite for the short names."""
    return [t if "/" in t else f"qtest-aarch64/{t}" for t in tests]


# One result line of `meson test` (mtest.py's TestHarness.format): `N/M <name> <RESULT> <s>s`.
# The name is `qemu:qtest+qtest-aarch64 / qtest-aarch64/qos-test` up to meson 1.9 and
# `qtest+qtest-aarch64 - qemu:qtest-aarch64/qos-test` from 1.10 on.
_MESON_RESULT = re.compile(
    r"^\s*\d+/\d+ (?P<name>\S.*?)\s+(?P<status>OK|FAIL|SKIP|TIMEOUT|INTERRUPT|ERROR|EXPECTEDFAIL"
    r"|UNEXPECTEDPASS|IGNORED)\s+\d+\.\d+s\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What counts as passed: a SKIP means the test did not check anything (a missing ROM or
# accelerator), so it cannot vouch for the series.
QTEST_PASSED = frozenset({"OK", "EXPECTEDFAIL"})


def meson_test_name(pretty: str) -> str:
    """The name `meson test` takes (`qtest-aarch64/qos-test`) from the name it prints."""
    if " / " in pretty:
        return pretty.split(" / ", 1)[1]
    if " - " in pretty:
        return pretty.split(" - ", 1)[1].split(":", 1)[-1]
    return pretty


def parse_meson_test(text: str) -> dict[str, str]:
    """Test name -> meson's result (OK, SKIP, FAIL, TIMEOUT, ...) from `meson test` output;
    a test listed twice (again in the summary of failures) keeps its last result."""
    results: dict[str, str] = {}
    for line in text.splitlines():
        if m := _MESON_RESULT.match(_ANSI.sub("", line)):
            results[meson_test_name(m["name"])] = m["status"]
    return results


@dataclass(frozen=True)
class QtestRun:
    """What `meson test` said about the named qtests: every one must have run and passed."""

    wanted: tuple[str, ...]  # meson test names, as passed to `meson test`
    results: dict[str, str]  # meson test name -> result, from its output
    returncode: int
    log: Path | None = None

    @property
    def problems(self) -> dict[str, str]:
        """Name -> result for each named test that did not pass ("did not run" if absent)."""
        return {t: self.results.get(t, "did not run") for t in self.wanted
                if self.results.get(t) not in QTEST_PASSED}

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{len(self.wanted)} qtests passed"
        lines = [f"{name}: {result}" for name, result in self.problems.items()]
        if self.returncode != 0:
            lines.append(f"meson test exited with status {self.returncode}")
        if self.log:
            lines.append(f"log {self.log}")
        return "\n".join(lines)


def qtest_run(tests: Sequence[str], output: str, returncode: int, log: Path | None = None) -> QtestRun:
    return QtestRun(tuple(qtest_names(tests)), parse_meson_test(output), returncode, log)


# --- host ------------------------------------------------------------------------------------


def _ensure_host(log: Log) -> None:
    if apt.missing_packages(HOST_PACKAGES):
        apt.ensure_sources(log)
        apt.ensure_host_packages(HOST_PACKAGES, log)


def toolchain_version(target: Target) -> str:
    cc = f"{CROSS}gcc" if target.cross else "gcc"
    out = []
    for cmd in ([cc, "--version"], ["meson", "--version"]):
        q = subprocess.run(cmd, capture_output=True, text=True)
        if q.returncode != 0:
            raise InfrastructureError(f"{cmd[0]} does not run: {q.stderr.strip()}")
        out.append(q.stdout.splitlines()[0])
    return "; ".join(out)


def library_versions(target: Target) -> str:
    """Versions of the libraries QEMU links against, as dpkg knows them."""
    arch = "arm64" if target.cross else "amd64"
    pkgs = [f"{p}:{arch}" for p in ("libglib2.0-dev", "libslirp-dev")]
    pkgs.append("libfdt-dev")  # the arm64 one is unpacked from the same version
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Package}:${Architecture}=${Version}\\n", *pkgs],
                       capture_output=True, text=True)
    return " ".join(sorted(q.stdout.split()))


def _run(cmd: list[str], log_file: Path, cwd: Path | None = None,
         env: Mapping[str, str] | None = None, check: bool = True) -> int:
    with log_file.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "LC_ALL": "C", **(env or {})})
    if check and p.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(True)[-30:])
        raise InfrastructureError(f"`{' '.join(cmd)}` failed ({p.returncode}), "
                                  f"log {log_file}:\n{tail}")
    return p.returncode


# --- source ----------------------------------------------------------------------------------


def source_tarball(store: Store, pin: Pin, log: Log, log_file: Path) -> Path:
    """The pinned tarball under <store>/sources, downloaded and verified when needed."""
    d = store.root / "sources"
    path, stamp = d / pin.filename, d / f"{pin.filename}.verified"
    if path.is_file():
        st = path.stat()
        if stamp_is_current(stamp.read_text() if stamp.exists() else None, pin, st.st_size,
                            st.st_mtime_ns):
            return path
    if not path.is_file():
        apt.require_root()
        apt.ensure_sources(log)
        log(f"qemu: apt-get source --download-only {SOURCE_SPEC}")
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="hil-qemu-", dir=d) as tmp:
            # The .dsc and debian.tar.xz answer 404: apt fails, the orig tarball is there.
            _run(["apt-get", "source", "--download-only", SOURCE_SPEC], log_file,
                 cwd=Path(tmp), check=False)
            got = Path(tmp) / pin.filename
            if not got.is_file():
                raise InfrastructureError(
                    f"`apt-get source --download-only {SOURCE_SPEC}` did not fetch "
                    f"{pin.filename} (pinned in {PIN_FILE}); log {log_file}")
            got.rename(path)
    log(f"qemu: verifying {pin.filename}")
    check_sha256(pin, sha256_file(path))
    st = path.stat()
    stamp.write_text(stamp_text(pin, st.st_size, st.st_mtime_ns))
    return path


def _prepare_tree(work: Path, tarball: Path, pin: Pin, log: Log, log_file: Path) -> Path:
    """A git tree of the pristine source under work/src, unpacked only when the pin changes."""
    src, marker = work / "src", work / "source-id"
    if src.is_dir() and marker.exists() and marker.read_text().strip() == pin.sha256:
        return src
    log(f"qemu: unpacking {tarball.name}")
    shutil.rmtree(work, ignore_errors=True)
    src.mkdir(parents=True)
    _run(["tar", "-xf", str(tarball), "-C", str(src), "--strip-components=1"], log_file)
    for blob in EDK2_BLOBS:
        target = src / "pc-bios" / blob
        if not target.exists():
            with target.open("wb") as f:
                subprocess.run(["bzip2", "-c"], stdin=subprocess.DEVNULL, stdout=f, check=True)
    git = ["git", "-C", str(src)]
    _run([*git, "init", "-q"], log_file)
    _run([*git, "add", "-A", "-f"], log_file)
    _run([*git, "commit", "-q", "-m", f"pristine {pin.filename}"], log_file, env=GIT_ENV)
    _run([*git, "tag", "-f", "pristine"], log_file)
    marker.write_text(pin.sha256 + "\n")
    return src


def _apply_patches(work: Path, src: Path, patches: list[Path], log_file: Path) -> None:
    """Reset to pristine and `git am` the series, unless exactly that series is applied."""
    git = ["git", "-C", str(src)]
    marker, wanted = work / "series-id", series_id(patches)
    clean = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    if marker.exists() and marker.read_text().strip() == wanted and not clean.stdout.strip():
        return
    marker.unlink(missing_ok=True)
    if (src / ".git" / "rebase-apply").exists():
        _run([*git, "am", "--abort"], log_file)
    _run([*git, "reset", "-q", "--hard", "pristine"], log_file)
    _run([*git, "clean", "-q", "-fdx"], log_file)
    if patches:
        _run([*git, "am", "-q", *map(str, patches)], log_file, env=GIT_ENV)
    marker.write_text(wanted + "\n")


def _sysroot(work: Path, log_file: Path) -> Path:
    """libfdt-dev:arm64 unpacked with dpkg -x (installing it would remove the amd64 one)."""
    root = work / "sysroot-arm64"
    if (root / "usr/include/libfdt.h").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    debs = work / "sysroot-debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    _run(["apt-get", "download", *SYSROOT_DEBS], log_file, cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], log_file)
    if not (root / "usr/include/libfdt.h").is_file():
        raise InfrastructureError(f"{' '.join(SYSROOT_DEBS)} did not give usr/include/libfdt.h")
    return root


def _configure(src: Path, build: Path, options: list[str], log: Log, log_file: Path) -> None:
    """Run configure when the build directory is new or was configured differently."""
    stamp = build / "hil-configure"
    want = "\n".join(options) + "\n"
    if (build / "build.ninja").is_file() and stamp.exists() and stamp.read_text() == want:
        return
    log(f"qemu: configure in {build}")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    _run(["nice", "-n", "10", str(src / "configure"), *options], log_file, cwd=build)
    stamp.write_text(want)


def _build(dest: Path, work: Path, inputs: KeyInputs, tarball: Path, log: Log) -> dict[str, Any]:
    t0 = time.monotonic()
    target = inputs.target
    log_file = work / f"build-{target.name}.log"
    log_file.write_text("")
    src = _prepare_tree(work, tarball, inputs.pin, log, log_file)
    _apply_patches(work, src, inputs.patches, log_file)
    sysroot = _sysroot(work, log_file) if target.cross else None
    build = work / f"build-{target.name}"
    _configure(src, build, configure_options(target, sysroot), log, log_file)
    log(f"qemu: ninja -j{JOBS} {BINARY} ({target.name}, {len(inputs.patches)} patches), "
        f"log {log_file}")
    _run(["nice", "-n", "10", "ninja", "-C", str(build), f"-j{JOBS}", BINARY], log_file)
    built = build / BINARY
    with built.open("rb") as f:
        machine = elf_machine(f.read(64))
    if machine != target.elf_machine:
        raise InfrastructureError(f"{built} is {machine}, expected {target.elf_machine}")
    (dest / "bin").mkdir()
    _run([target.strip, "--strip-unneeded", "-o", str(dest / "bin" / BINARY), str(built)],
         log_file)
    (dest / "patches.txt").write_text(patch_list(inputs.patches))
    seconds = time.monotonic() - t0
    size = (dest / "bin" / BINARY).stat().st_size
    log(f"qemu: built {target.name} in {seconds:.0f} s, {BINARY} {size / 1e6:.1f} MB")
    return {
        "source": {"package": "qemu", "version": VERSION, "spec": SOURCE_SPEC,
                   "tarball": inputs.pin.filename, "sha256": inputs.pin.sha256},
        "target": target.name,
        "toolchain": inputs.toolchain,
        "libraries": inputs.libraries,
        "configure": configure_options(target, Path("/SYSROOT")),
        "patches": {p.name: sha256_file(p) for p in inputs.patches},
        "build_seconds": round(seconds, 1),
    }


def work_dir(store: Store) -> Path:
    return store.root / "work" / "qemu"


def _build_target(store: Store, target: Target, log: Log) -> Path:
    _ensure_host(log)
    pin = read_pin()
    inputs = KeyInputs(
        target=target,
        pin=pin,
        toolchain=toolchain_version(target),
        libraries=library_versions(target),
        patches=patch_files(PATCHES),
        module=Path(__file__),
    )
    key = cache_key(inputs)

    def build(out: Path) -> dict[str, Any]:
        work = work_dir(store)
        work.mkdir(parents=True, exist_ok=True)
        tarball = source_tarball(store, pin, log, work / "source.log")
        return _build(out, work, inputs, tarball, log)

    return store.ensure(target.artifact, key, build, log)


def build_qemu(store: Store, log: Log = print) -> Path:
    """The patched QEMU for the arm64 board (artefact qemu-arm64: bin/qemu-system-aarch64)."""
    return _build_target(store, ARM64, log)


def build_qemu_x86(store: Store, log: Log = print) -> Path:
    """The patched QEMU for this machine (artefact qemu-x86), for qtests and TCG boots."""
    return _build_target(store, X86, log)


def run_qtests(store: Store, tests: Sequence[str] = DEFAULT_QTESTS, log: Log = print) -> QtestRun:
    """Build the x86 QEMU and run the named qtests of its tree; the result is ok only if
    each of them ran and passed (a SKIP or a test meson did not run is no pass)."""
    build_qemu_x86(store, log)
    if apt.missing_packages(QTEST_PACKAGES):
        apt.ensure_sources(log)
        apt.ensure_host_packages(QTEST_PACKAGES, log)
    work = work_dir(store)
    build, src = work / "build-x86", work / "src"
    log_file = work / "qtest.log"
    log_file.write_text("")
    # The x86 artefact may come from the cache while the work tree holds another series.
    _apply_patches(work, src, patch_files(PATCHES), log_file)
    # Blobs the tree has (pc-bios/*.bin) are not linked with --disable-install-blobs.
    roms = [f for d in (src / "pc-bios", *QTEST_ROM_DIRS) for f in sorted(d.glob("*"))
            if f.is_file() and f.suffix in (".bin", ".rom")]
    for link, target in rom_links(build / BUNDLE_DATADIR, roms).items():
        if not link.is_symlink() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
    # meson test builds what the named tests depend on (their executables, the emulator,
    # the ROMs), not every qtest.
    log(f"qemu: meson test {' '.join(tests)}, log {log_file}")
    rc = 0
    for names, args in meson_runs(tests):
        test_args = [f"--test-args={shlex.join(args)}"] if args else []
        rc = _run(["nice", "-n", "10", "meson", "test", "-C", str(build),
                   f"--num-processes={JOBS}", "--print-errorlogs", *test_args, *names],
                  log_file, check=False) or rc
    return qtest_run(tests, log_file.read_text(errors="replace"), rc, log_file)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    t0 = time.monotonic()
    try:
        if args[:1] == ["--qtests"]:
            run = run_qtests(Store(), args[1:] or DEFAULT_QTESTS)
            print(f"qtests {'passed' if run.ok else 'FAILED'} ({time.monotonic() - t0:.1f} s)")
            if not run.ok:
                print(run.summary(), file=sys.stderr)
            return 0 if run.ok else 1
        build = build_qemu_x86 if args[:1] == ["--x86"] else build_qemu
        path = build(Store())
    except InfrastructureError as e:
        print(f"qemu: {e}", file=sys.stderr)
        return 1
    print(f"{path} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
