"""The TFTP probe asked before a board is powered, against a server of a few lines."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from hil.labgrid import tftpprobe


def test_a_read_request_is_rfc_1350s() -> None:
    assert tftpprobe.read_request("x.img") == b"\0\x01x.img\0octet\0"


@pytest.mark.parametrize("packet, says", [
    (b"\0\x05\0\x01File not found\0", "error 1: File not found"),
    (b"\0\x03\0\x01" + b"d" * 512, "data block 1"),
    (b"\0\x04\0\x01", None),  # an ACK is no answer to a read request
    (b"\0", None),
])
def test_what_an_answer_says(packet: bytes, says: str | None) -> None:
    assert tftpprobe.describe(packet) == says


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """A TFTP server that answers every read request with 'File not found' from a new port,
    as tftpd-hpa does."""
    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.bind(("127.0.0.1", 0))
    listen.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = listen.recvfrom(1024)
            except TimeoutError:
                continue
            seen.append(data)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
                tid.sendto(struct.pack("!HH", 5, 1) + b"File not found\0", peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield listen.getsockname()[1], seen
    stop.set()
    t.join()
    listen.close()


def test_a_server_that_answers_passes(server: tuple[int, list[bytes]]) -> None:
    port, seen = server
    assert tftpprobe.probe("127.0.0.1", port) is None
    assert seen and seen[0].startswith(b"\0\x01hil-probe-")


def test_a_port_where_nothing_listens_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never read: requests vanish
        assert tftpprobe.probe("127.0.0.1", port, timeout=0.3) == "no answer within 1 s"


def test_a_name_that_does_not_resolve_is_named() -> None:
    why = tftpprobe.probe("no-such-host.invalid", timeout=0.3)
    assert why is not None and why.startswith("no-such-host.invalid does not resolve")
