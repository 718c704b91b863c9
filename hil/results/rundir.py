"""Each qualification run writes its own directory and never appends to an earlier one."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from hil.errors import ConfigError

DEFAULT_PARENT = Path("results")
LATEST = "latest"


def run_id(now: float | None = None) -> str:
    """Sortable by start time, unique among runs started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(3)}"


CLAIM = ".hil-run"


def claim(path: Path) -> None:
    """Make `path` this run's alone: two runs given the same empty directory both see it
    empty, but only one creates its claim."""
    try:
        fd = os.open(path / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigError(f"results directory {path} is claimed by another run: name a new "
                          "directory") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")


def create(path: Path | None, parent: Path = DEFAULT_PARENT) -> Path:
    """The run's directory, created now: `path` if given (it must be new or empty), else a
    new `<parent>/<run id>` with `<parent>/latest` pointing at it."""
    if path is not None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"results directory {path} already holds a run: a run never adds "
                              "to another's results; name a new directory or leave "
                              "--hil-results out for a fresh one under results/")
        path.mkdir(parents=True, exist_ok=True)
        claim(path)
        return path.resolve()
    run = parent / run_id()
    run.mkdir(parents=True)
    claim(run)
    link = parent / LATEST
    tmp = parent / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run.name)
    tmp.replace(link)
    return run.resolve()


def write_atomic(path: Path, text: str) -> None:
    """`path` holds either its old content or all of `text`, never a part (a reader, a crash
    or a full disk in the middle sees a whole file or none)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
