"""The board and guest images: Debian's arm64 kernel plus initramfs built from Debian's packages.

The board image is what a real board would get by TFTP or on its SD card: a kernel, one
initramfs and the real boards' device trees (dtbs/, see hil/firmware/dtbs.py). It carries the
guest's kernel and initramfs under /guest, so the board needs no network or disk to start its
KVM guest.
"""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hil.errors import ConfigError, InfrastructureError
from hil.measure import kernel_log

from . import apt, cpio, dtbs, elf, kernel, kmod, qemu, tools
from .cache import Store, digest, sha256_file

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
RECIPE = FIRMWARE / "images.yaml"
ROOTFS = FIRMWARE / "rootfs"
ARTIFACT = "board-image"
Log = Callable[[str], None]


@dataclass(frozen=True)
class ImageSpec:
    name: str
    packages: list[str]
    binaries: list[str]
    modules: list[str]
    # The forms the initramfs is written in, each a file: none (initramfs.cpio), gzip
    # (initramfs.cpio.gz).
    compression: tuple[str, ...]
    carries: str | None
    patched_vmm: str | None  # where the image holds the patched QEMU, if it holds one
    tools: list[str]  # our own programs (hil/firmware/tools.py), at /usr/bin/<name>


def _forms(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Recipe:
    kernel_regex: str
    host_packages: dict[str, str | None]
    images: dict[str, ImageSpec]
    dtbs_from: tuple[str, ...] = ()  # environment files whose targets name their DTB

    @classmethod
    def load(cls, path: Path = RECIPE) -> Recipe:
        try:
            data = yaml.safe_load(path.read_text())
            images = {
                name: ImageSpec(
                    name=name,
                    packages=list(spec["packages"]),
                    binaries=list(spec.get("binaries", [])),
                    modules=list(spec.get("modules", [])),
                    compression=_forms(spec.get("compression", "none")),
                    carries=spec.get("carries"),
                    patched_vmm=spec.get("patched_vmm"),
                    tools=list(spec.get("tools", [])),
                )
                for name, spec in data["images"].items()
            }
            recipe = cls(data["kernel"]["package_regex"], dict(data["host_packages"]), images,
                         tuple(data.get("dtbs_from") or ()))
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{path}: not a valid image recipe ({e!r})") from e
        for spec in images.values():
            for name in spec.tools:
                tools.source(ROOTFS, name)  # a missing or misnamed source fails here
            if not spec.compression or not set(spec.compression) <= {"none", "gzip"}:
                raise ConfigError(f"{path}: image {spec.name}: compression must be none, gzip "
                                  "or a list of both")
            if spec.carries and spec.carries not in images:
                raise ConfigError(f"{path}: image {spec.name} carries unknown image {spec.carries}")
        return recipe

    def packages(self, kernel_package: str) -> list[str]:
        return sorted({kernel_package, *(p for i in self.images.values() for p in i.packages)})


def _inputs(recipe_path: Path, debs: list[apt.Deb], built: list[Path],
            wanted: list[dtbs.Request], compiler: str) -> list[str | bytes | Path]:
    sources = [Path(__file__), Path(dtbs.__file__), Path(tools.__file__),
               *sorted(ROOTFS.iterdir())]
    # Built artefacts (guest kernel, patched QEMU) carry their content key in their names.
    # Only the DTB names count: renaming a board or editing its other options rebuilds nothing.
    return [recipe_path, *sources, kernel_log.script(), *(p.name for p in built), compiler,
            *(f"{d.filename} {d.size} {d.checksum}" for d in debs),
            *(f"dtb {name}" for name in sorted({r.dtb for r in wanted}))]


def build(recipe_path: Path = RECIPE, store: Store | None = None, log: Log = print) -> Path:
    """Build (or find in the cache) the images and point images/board-image at them."""
    store = store or Store()
    recipe = Recipe.load(recipe_path)
    # A malformed DTB name fails here, before anything is fetched or built.
    wanted = dtbs.load_requests([REPO / p for p in recipe.dtbs_from], REPO)
    t0 = time.monotonic()
    apt.ensure_sources(log)
    apt.ensure_host_packages(recipe.host_packages, log)
    # Step times: a first run does every step, and its test reports them.
    log(f"apt: sources and host packages ready in {time.monotonic() - t0:.1f} s")
    guest_kernel = kernel.build_guest_kernel(store, log)
    debug_kernel = kernel.build_guest_kernel(store, log, debug=True)
    vmm = qemu.build_qemu(store, log)
    kernel_package = apt.newest_package(
        apt.package_names("^" + recipe.kernel_regex.replace("(\\d+)", "[0-9]+") + "$"),
        recipe.kernel_regex,
    )
    archive = apt.Arm64Archive(store.root / "debs")
    packages = recipe.packages(kernel_package)
    t0 = time.monotonic()
    debs = archive.resolve(packages)
    log(f"apt: resolved {len(debs)} arm64 packages in {time.monotonic() - t0:.1f} s")
    compiler = tools.compiler_version() if any(s.tools for s in recipe.images.values()) else ""
    key = digest(_inputs(recipe_path, debs, [guest_kernel, debug_kernel, vmm], wanted, compiler))

    def assemble(out: Path) -> dict[str, Any]:
        log(f"images: {len(debs)} packages, kernel {kernel_package}")
        t0 = time.monotonic()
        paths = archive.fetch(packages, debs)
        log(f"apt: {len(paths)} .debs ({sum(d.size for d in debs) / 1e6:.0f} MB) ready in "
            f"{time.monotonic() - t0:.1f} s ({archive.cache})")
        return _assemble(recipe, kernel_package, debs, paths, guest_kernel, debug_kernel, vmm,
                         wanted, out, log)

    return store.ensure(ARTIFACT, key, assemble, log)


def _assemble(recipe: Recipe, kernel_package: str, debs: list[apt.Deb], paths: list[Path],
              guest_kernel: Path, debug_kernel: Path, vmm: Path, wanted: list[dtbs.Request],
              out: Path, log: Log) -> dict[str, Any]:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hil-sysroot-") as tmp:
        root = Path(tmp)
        for p in paths:
            subprocess.run(["dpkg-deb", "-x", str(p), str(root)], check=True)
        kver, image, packed = _kernel(root)
        (out / "Image").write_bytes(image)
        # The same kernel as Debian ships it, gzip'd: a third of the bytes for U-Boot to
        # fetch over TFTP (booti unpacks it).
        (out / "Image.gz").write_bytes(packed)
        # Debian installs the DTBs beside the kernel's release; a missing one fails the build
        # before the initramfs work, naming the board that wants it.
        dtb_sums = dtbs.install(wanted, root / f"usr/lib/linux-image-{kver}", kernel_package, out)
        if dtb_sums:
            log(f"images: {len(dtb_sums)} board DTBs")
        stock_vmm = root / "usr/bin" / qemu.BINARY
        stock_vmm_sha = sha256_file(stock_vmm) if stock_vmm.is_file() else None
        deps = _depmod(root, kver)
        builtin = kmod.parse_builtin((root / f"lib/modules/{kver}/modules.builtin").read_text())
        # Images that others carry are built first.
        order = sorted(recipe.images.values(), key=lambda s: s.carries is not None)
        (root / "hil-tools").mkdir()
        built = tools.build(ROOTFS, sorted({t for s in order for t in s.tools}), root / "hil-tools")
        for spec in order:
            carried = out / spec.carries if spec.carries else None
            kernels = {"Image": guest_kernel / "Image", "Image-debug": debug_kernel / "Image",
                       "Image-debian": out / "Image"}
            extra = {spec.patched_vmm: vmm / "bin" / qemu.BINARY} if spec.patched_vmm else {}
            extra.update({f"/usr/bin/{t}": built[t] for t in spec.tools})
            _initramfs(spec, root, kver, deps, builtin, out / spec.name, carried, kernels, extra)
            log(f"images: {spec.name} initramfs {_size(out / spec.name)}")
    log(f"images: assembled in {time.monotonic() - t0:.1f} s")
    qemu_debs = [d.version for d in debs if d.package == "qemu-system-arm"]
    # What a run qualified: provenance (hil/results/provenance.py) reads these.
    return {
        "kernel": {"package": kernel_package, "release": kver,
                   "sha256": sha256_file(out / "Image"),
                   "gz_sha256": sha256_file(out / "Image.gz")},
        "dtbs": dtb_sums,
        "stock_vmm": {"package": f"qemu-system-arm {qemu_debs[0] if qemu_debs else '?'}",
                      "sha256": stock_vmm_sha},
        "guest_kernel": {"artifact": guest_kernel.name,
                         "sha256": sha256_file(guest_kernel / "Image")},
        "debug_guest_kernel": {"artifact": debug_kernel.name,
                               "sha256": sha256_file(debug_kernel / "Image")},
        "patched_vmm": {"artifact": vmm.name,
                        "sha256": sha256_file(vmm / "bin" / qemu.BINARY)},
        "packages": [
            {"package": d.package, "version": d.version, "size": d.size,
             "sha256": sha256_file(p)}
            for d, p in zip(debs, paths, strict=True)
        ],
    }


def _size(d: Path) -> str:
    return ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(d.iterdir()))


def _kernel(root: Path) -> tuple[str, bytes, bytes]:
    """The kernel's release, its plain Image and the same gzip'd."""
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    if len(vmlinuz) != 1:
        raise InfrastructureError(f"expected one kernel in the packages, found {vmlinuz}")
    kver = vmlinuz[0].name.removeprefix("vmlinuz-")
    packed = data = vmlinuz[0].read_bytes()
    # Debian's arm64 vmlinuz is a gzip'd Image; QEMU's -kernel and firmware that loads from
    # local storage boot the plain Image fastest.
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    else:
        packed = gzip.compress(data, 6)
    if data[0x38:0x3C] != b"ARM\x64":
        raise InfrastructureError(f"{vmlinuz[0]} is not an arm64 Image")
    return kver, data, packed


def _depmod(root: Path, kver: str) -> dict[str, list[str]]:
    subprocess.run(["depmod", "-b", str(root), kver], check=True)
    return kmod.parse_modules_dep((root / f"lib/modules/{kver}/modules.dep").read_text())


def _initramfs(spec: ImageSpec, root: Path, kver: str, deps: dict[str, list[str]],
               builtin: set[str], out: Path, carried: Path | None,
               kernels: dict[str, Path], extra: dict[str, Path]) -> None:
    out.mkdir()
    buf = io.BytesIO()
    w = cpio.CpioWriter(buf)
    for d in ("/dev", "/proc", "/sys", "/tmp", "/run", "/etc/hil", "/root"):
        w.dir(d)
    w.chardev("/dev/console", 5, 1)
    w.copy("/init", ROOTFS / "init", 0o755)
    w.copy("/etc/hil/network", ROOTFS / "network")
    w.copy("/etc/hil/ifup", ROOTFS / "ifup", 0o755)
    w.file(kernel_log.SCRIPT_PATH, kernel_log.script().encode(), 0o755)
    w.copy("/bin/busybox", root / "bin/busybox", 0o755)
    w.symlink("/bin/sh", "busybox")
    for path, src in sorted(elf.closure(root, spec.binaries, extra).items()):
        w.copy(path, src, 0o755)
    try:
        mods = kmod.closure(deps, spec.modules, builtin)
    except KeyError as e:
        raise InfrastructureError(f"kernel {kver} has no module {e.args[0]}") from e
    moddir = f"/lib/modules/{kver}"
    dep_lines = []
    for rel in mods:
        # Decompress on the build host: busybox modprobe then needs no xz support at boot.
        plain = rel.removesuffix(".xz")
        data = (root / moddir.lstrip("/") / rel).read_bytes()
        w.file(f"{moddir}/{plain}", lzma.decompress(data) if rel.endswith(".xz") else data)
        dep_lines.append(f"{plain}: {' '.join(d.removesuffix('.xz') for d in deps[rel])}".strip())
    w.file(f"{moddir}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
    # Built-in drivers (virtio_console in Debian's kernel) need no modprobe.
    loadable = [m for m in spec.modules if kmod.normalize(m) not in builtin]
    w.file("/etc/hil/modules", ("\n".join(loadable) + "\n").encode())
    if carried is not None:
        # /guest/Image is the patched guest kernel, /guest/Image-debug its debug variant;
        # /guest/Image-debian is Debian's stock one.
        for name, image in kernels.items():
            w.copy(f"/guest/{name}", image)
        for f in sorted(carried.iterdir()):
            w.copy(f"/guest/{f.name}", f)
    w.close()
    data = buf.getvalue()
    if "gzip" in spec.compression:
        # mtime 0: the same inputs give the same bytes.
        (out / "initramfs.cpio.gz").write_bytes(gzip.compress(data, 6, mtime=0))
    if "none" in spec.compression:
        (out / "initramfs.cpio").write_bytes(data)


def clean(store: Store | None = None) -> None:
    store = store or Store()
    shutil.rmtree(store.root / "artifacts", ignore_errors=True)
