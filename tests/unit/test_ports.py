"""The ports a lab gives its services."""

from __future__ import annotations

import socket

import pytest

from hil.ports import PortPool, free_port


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
