"""A content-addressed artefact store outside the repository.

Every artefact lives in a directory named after a hash of all of its inputs, with a
manifest.json written last: a directory without a manifest is an interrupted build and is
ignored. Stable names (`images/<name>`) are symlinks to the newest build, so environment files
can point at one path.
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


def default_root() -> Path:
    return Path(os.environ.get("HIL_CACHE", Path.home() / ".cache" / "hil"))


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
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

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

    def build(self, name: str, key: str, build: Callable[[Path], dict[str, Any]]) -> Path:
        """Run `build(tmpdir)` and publish its output atomically under the key."""
        with self.lock(name):
            # Another process may have built it while we waited for the lock.
            return self.lookup(name, key) or self._build(name, key, build)

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
               log: Callable[[str], None] = print) -> Path:
        """The artefact for `key`, from the cache or built now; published as images/<name>."""
        out = self.lookup(name, key)
        if out:
            log(f"{name}: cache hit {out}")
        else:
            log(f"{name}: building {self.artifact_dir(name, key).name}")
            out = self.build(name, key, build)
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


def read_manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    return data
