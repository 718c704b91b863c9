"""A free TCP port of this host, for the services a lab starts on loopback or its address, and
whether an address is one of this host's."""

from __future__ import annotations

import socket


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def is_local_address(address: str) -> bool:
    """Whether `address` is one of this host's (only then can a socket bind it)."""
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True
