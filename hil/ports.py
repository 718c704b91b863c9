"""Free TCP ports of this host, for the services a lab starts on loopback or its address, and
whether an address is one of this host's."""

from __future__ import annotations

import socket
from collections.abc import Callable


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class PortPool:
    """Free ports for the services of one lab, never the same one twice. Two free_port() calls
    in a row can return the same port (the kernel may hand a just-closed one out again): a lab
    once gave its coordinator the port its sshd then held."""

    def __init__(self, pick: Callable[[str], int] = free_port):
        self._pick = pick
        self._given: set[int] = set()

    def take(self, address: str = "127.0.0.1") -> int:
        for _ in range(64):
            port = self._pick(address)
            if port not in self._given:
                self._given.add(port)
                return port
        raise OSError(f"no free port on {address} other than {sorted(self._given)}")


def is_local_address(address: str) -> bool:
    """Whether `address` is one of this host's (only then can a socket bind it)."""
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True
