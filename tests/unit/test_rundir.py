"""A run's results directory: claimed by one run, files written whole."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.results import rundir


def test_two_runs_given_one_empty_directory_one_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "res"
    target.mkdir()
    won: list[Path] = []
    refused: list[str] = []
    barrier = threading.Barrier(2)

    def start() -> None:
        barrier.wait()
        try:
            won.append(rundir.create(target))
        except ConfigError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 1
    assert "claimed by another run" in refused[0] or "already holds a run" in refused[0]
    assert (target / rundir.CLAIM).read_text() == f"{os.getpid()}\n"


def test_a_file_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "verdict.json"
    rundir.write_atomic(path, '{"exit_code": 0}\n')
    assert path.read_text() == '{"exit_code": 0}\n'

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        rundir.write_atomic(path, '{"exit_code": 1, "half": ')
    assert path.read_text() == '{"exit_code": 0}\n'  # the old one, whole
    assert [p.name for p in tmp_path.iterdir()] == ["verdict.json"]  # no temporary left
