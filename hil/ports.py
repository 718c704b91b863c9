"""A free TCP port of this host, for the services a lab starts on loopback or its address."""

from __future__ import annotations

import socket


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])
