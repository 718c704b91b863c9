"""Does a TFTP server answer? Asked before a board is powered, so that a lab whose TFTP server
is down gets one message instead of a U-Boot that retries until its timeout.

The probe is a read request (RFC 1350) for a file that does not exist: any server answers it,
with an ERROR packet (or DATA, should the name exist), from a port of its own. It is sent from
the machine that runs the tests to the address U-Boot is given; a lab whose TFTP server
answers only on the boards' network turns the probe off (`tftp_probe: false` on the strategy).
"""

from __future__ import annotations

import secrets
import socket
import struct

PORT = 69
RRQ, DATA, ERROR = 1, 3, 5


def read_request(filename: str, mode: str = "octet") -> bytes:
    return struct.pack("!H", RRQ) + filename.encode() + b"\0" + mode.encode() + b"\0"


def describe(packet: bytes) -> str | None:
    """What a TFTP answer says, or None if `packet` is not one."""
    if len(packet) < 4:
        return None
    opcode, arg = struct.unpack("!HH", packet[:4])
    if opcode == ERROR:
        message = packet[4:].split(b"\0", 1)[0].decode(errors="replace")
        return f"error {arg}: {message}"
    if opcode == DATA:
        return f"data block {arg}"
    return None


def probe(host: str, port: int = PORT, timeout: float = 2.0, attempts: int = 2) -> str | None:
    """None when a TFTP server at host:port answers; else why it did not."""
    try:
        address = socket.gethostbyname(host)
    except OSError as e:
        return f"{host} does not resolve ({e})"
    name = f"hil-probe-{secrets.token_hex(4)}"
    why = f"no answer within {timeout * attempts:.0f} s"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(attempts):
            try:
                s.sendto(read_request(name), (address, port))
                while True:
                    data, (peer, _) = s.recvfrom(1024)
                    # The answer comes from the server's host, from a new port (its TID).
                    if peer == address and describe(data) is not None:
                        return None
            except TimeoutError:
                continue
            except OSError as e:  # ICMP port unreachable, no route, a bad address
                return str(e.strerror or e)
    return why
