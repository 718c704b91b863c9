"""A content-addressed artefact store outside the repository.

Every artefact lives in a directory named after a hash of all of its inputs, with a
manifest.json written last: a directory without a manifest is an interrupted build and is
ignored. Stable names (`images/<name>`) are symlinks to the newest build, so environment files
can point at one path.

A store may have a seed: another (warm) store from which the compiled artefacts in SEEDABLE
are taken by their content key instead of being built again (`HIL_CACHE_SEED`). The project's
first-run test uses it to run every set-up step against an empty cache without recompiling
Linux and QEMU.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# Only artefacts compiled from inputs that their key covers completely may come from a seed.
# The board image and the .debs it is made of never do: a seeded store must still resolve,
# download and assemble them, or the first-run path would go untested.
SEEDABLE = frozenset({"guest-kernel", "guest-kernel-debug", "qemu-arm64", "qemu-x86"})
Log = Callable[[str], None]


def default_root() -> Path:
    return Path(os.environ.get("HIL_CACHE", Path.home() / ".cache" / "hil"))


def default_images() -> Path:
    """Where environment files find the images (HIL_IMAGES): images/ of the default store."""
    return Path(os.environ.get("HIL_IMAGES", default_root() / "images"))


def default_seed() -> Store | None:
    seed = os.environ.get("HIL_CACHE_SEED")
    return Store(Path(seed)) if seed else None


def _quiet(_msg: str) -> None:
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(parts: Iterable[str | bytes | Path]) -> str:
    """Hash an ordered list of inputs; a Path contributes its name and contents."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.name.encode() + b"\0")
            h.update(part.read_bytes())
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(part)
        h.update(b"\0")
    return h.hexdigest()


class Store:
    def __init__(self, root: Path | None = None, seed: Store | None = None) -> None:
        """`Store()` is the default store: HIL_CACHE, seeded from HIL_CACHE_SEED if set."""
        if root is None:
            root = default_root()
            seed = seed or default_seed()
        self.root = root
        # A seed that is this very store would copy an artefact onto itself.
        self.seed = seed if seed and seed.root.resolve() != root.resolve() else None

    def artifact_dir(self, name: str, key: str) -> Path:
        return self.root / "artifacts" / f"{name}-{key[:16]}"

    def lookup(self, name: str, key: str) -> Path | None:
        d = self.artifact_dir(name, key)
        return d if (d / MANIFEST).is_file() else None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialise builds of one artefact across processes (CI and a developer, say)."""
        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def build(self, name: str, key: str, build: Callable[[Path], dict[str, Any]],
              log: Log = _quiet) -> Path:
        """Run `build(tmpdir)` and publish its output atomically under the key, unless the
        seed has it."""
        with self.lock(name):
            # Another process may have built it while we waited for the lock.
            out = self.lookup(name, key) or self._from_seed(name, key, log)
            if out is None:
                log(f"{name}: building {self.artifact_dir(name, key).name}")
                out = self._build(name, key, build)
            return out

    def _from_seed(self, name: str, key: str, log: Log) -> Path | None:
        """Copy the seed's artefact for `key` into this store (hard links where possible)."""
        if self.seed is None or name not in SEEDABLE:
            return None
        src = self.seed.lookup(name, key)
        if src is None:
            return None
        final = self.artifact_dir(name, key)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Hard links survive the seed pruning its copy later; the seed's lock is not
            # taken (it may be read-only), so a copy that raced a prune fails the check below.
            shutil.copytree(src, tmp, symlinks=True, copy_function=_link_or_copy)
            intact = _intact(tmp, key)
        except (OSError, ValueError, KeyError, TypeError):  # pruned meanwhile, or no manifest
            intact = False
        if not intact:
            shutil.rmtree(tmp, ignore_errors=True)
            log(f"{name}: seed copy {src} is incomplete, building instead")
            return None
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self.prune(name, keep=final)
        log(f"{name}: taken from seed {src}")
        return final

    def _build(self, name: str, key: str, build: Callable[[Path], dict[str, Any]]) -> Path:
        final = self.artifact_dir(name, key)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        meta = build(tmp)
        files = {
            str(p.relative_to(tmp)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
        manifest = {"name": name, "key": key, **meta, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self.prune(name, keep=final)
        return final

    def prune(self, name: str, keep: Path, spare: int = 2) -> None:
        """Drop all but the `spare` newest builds of `name` (always keeping `keep`)."""
        # By the exact shape of a build's name: guest-kernel-* would match guest-kernel-debug-*.
        shape = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}(\.tmp)?")
        builds = sorted((p for p in self.root.glob("artifacts/*") if shape.fullmatch(p.name)),
                        key=lambda p: p.stat().st_mtime)
        others = [p for p in builds if p != keep and not p.name.endswith(".tmp")]
        stale = others[: max(len(others) - (spare - 1), 0)]
        # Leftover .tmp directories are interrupted builds (we hold the lock: none is running).
        for p in stale + [p for p in builds if p.name.endswith(".tmp")]:
            shutil.rmtree(p, ignore_errors=True)

    def ensure(self, name: str, key: str, build: Callable[[Path], dict[str, Any]],
               log: Log = print) -> Path:
        """The artefact for `key`, from the cache (or its seed) or built now; published as
        images/<name>."""
        out = self.lookup(name, key)
        if out:
            log(f"{name}: cache hit {out}")
        else:
            out = self.build(name, key, build, log)
        self.publish(name, out)
        return out

    def publish(self, name: str, path: Path) -> Path:
        """Point the stable name images/<name> at an artefact directory."""
        link = self.root / "images" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(link.name + ".new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(path)
        tmp.replace(link)
        return link


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _intact(d: Path, key: str) -> bool:
    """Whether `d` holds the artefact for `key` with every file its manifest lists."""
    manifest = read_manifest(d)
    if manifest.get("key") != key:  # directory names carry only 16 hex digits of it
        return False
    for rel, info in manifest.get("files", {}).items():
        p = d / rel
        if not p.is_file() or p.stat().st_size != info["size"] or sha256_file(p) != info["sha256"]:
            return False
    return True


def read_manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    return data
