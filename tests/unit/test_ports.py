"""The ports a lab gives its services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hil.errors import InfrastructureError
from hil.ports import Claim, PortPool, free_port


def test_a_pool_never_gives_a_port_twice_though_the_kernel_may() -> None:
    picks = iter([53489, 53489, 53489, 41000])
    pool = PortPool(pick=lambda address: next(picks))
    assert [pool.take(), pool.take()] == [53489, 41000]


def test_a_pool_that_only_gets_ports_it_gave_says_so() -> None:
    pool = PortPool(pick=lambda address: 53489)
    pool.take()
    with pytest.raises(OSError, match=r"no free port on 127\.0\.0\.1"):
        pool.take()


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_port_claimed_by_one_board_is_refused_to_another_until_released(tmp_path: Path) -> None:
    first = Claim(45871, "a virtual board's console", where=tmp_path)
    with pytest.raises(InfrastructureError,
                       match=rf"port 45871 is claimed by a virtual board's console "
                             rf"\(pid {os.getpid()}\) on this host"):
        Claim(45871, "another board", where=tmp_path)
    Claim(45872, "another board", where=tmp_path).release()
    first.release()
    Claim(45871, "another board", where=tmp_path).release()


def test_a_claim_ends_with_its_process(tmp_path: Path) -> None:
    """A session killed while its board is on leaves no claim behind."""
    code = (f"from pathlib import Path; from hil.ports import Claim; "
            f"Claim(45871, 'x', where=Path({str(tmp_path)!r})); print('held', flush=True); "
            f"import time; time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"held\n"
    with pytest.raises(InfrastructureError, match="claimed by x"):
        Claim(45871, "y", where=tmp_path)
    child.kill()
    child.wait()
    Claim(45871, "y", where=tmp_path).release()
