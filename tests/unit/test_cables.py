"""A serial cable of the virtual lab carries bytes both ways while someone holds its device,
drops the board's output while no one does, and survives power cycles of the board."""

from __future__ import annotations

import os
import select
import socket
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.virtual_lab.cables import SerialCable


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[SerialCable]:
    c = SerialCable("board0-console", tmp_path / "c.sock").start()
    yield c
    c.stop()


def board(cable: SerialCable) -> socket.socket:
    """What QEMU's `-chardev socket,path=...` does at power-on."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(cable.socket_path))
    s.settimeout(3)
    time.sleep(0.1)
    return s


def open_device(cable: SerialCable) -> int:
    """What ser2net does when a client connects."""
    fd = os.open(cable.device, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    time.sleep(0.15)  # the cable notices within UNPLUGGED_POLL_S
    return fd


def read_device(fd: int, timeout: float = 3) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 4096) if ready else b""


def test_the_device_is_a_tty_under_dev(cable: SerialCable) -> None:
    # labgrid's exporter asserts this before it starts ser2net on a RawSerialPort.
    assert cable.device.startswith("/dev/pts/")
    fd = os.open(cable.device, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_bytes_cross_both_ways(cable: SerialCable) -> None:
    b = board(cable)
    fd = open_device(cable)
    b.sendall(b"U-Boot 2023.01\r\n")
    assert read_device(fd) == b"U-Boot 2023.01\r\n"
    os.write(fd, b"\x03")
    assert b.recv(16) == b"\x03"
    os.close(fd)
    b.close()


def test_output_while_nobody_listens_is_dropped_not_kept(cable: SerialCable) -> None:
    b = board(cable)
    b.sendall(b"hil-board# stale prompt\r\n")
    time.sleep(0.2)
    fd = open_device(cable)
    b.sendall(b"fresh\r\n")
    assert read_device(fd) == b"fresh\r\n"
    os.close(fd)
    b.close()


def test_the_device_stays_across_a_power_cycle(cable: SerialCable) -> None:
    fd = open_device(cable)
    first = board(cable)
    first.sendall(b"boot 1\n")
    assert read_device(fd) == b"boot 1\n"
    first.close()  # power off: QEMU exits
    time.sleep(0.1)
    second = board(cable)  # power on again
    second.sendall(b"boot 2\n")
    assert read_device(fd) == b"boot 2\n"
    os.close(fd)
    second.close()


def read_all(fd: int, want: int, timeout: float = 10, pause: float = 0.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += read_device(fd, 0.5)
        time.sleep(pause)  # a slow reader: ser2net on a busy host
    return got


def test_a_burst_larger_than_the_ptys_buffer_reaches_a_slow_reader_whole(
        cable: SerialCable) -> None:
    """QEMU sends without a baud rate: an iperf3 JSON document is far more than the pty
    holds. Every byte must arrive, in order (a lost write tail once broke one)."""
    fd = open_device(cable)
    b = board(cable)
    burst = b"".join(b"line %05d of the burst\r\n" % i for i in range(3000))  # ~75 KiB
    b.sendall(burst)
    assert read_all(fd, len(burst), pause=0.01) == burst
    assert cable.dropped == 0
    os.close(fd)
    b.close()


def test_a_reader_that_stops_reading_costs_a_bounded_backlog_and_never_stops_the_board(
        cable: SerialCable) -> None:
    from hil.virtual_lab import cables

    fd = open_device(cable)
    b = board(cable)
    flood = b"x" * (cables.BACKLOG * 2)
    b.settimeout(10)
    b.sendall(flood)  # completes: the cable keeps reading the board
    deadline = time.monotonic() + 10
    while cable.dropped == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cable.dropped > 0
    assert len(cable.pending) <= cables.BACKLOG
    os.close(fd)
    b.close()


def test_a_cable_nobody_holds_sleeps_until_someone_opens_its_device(cable: SerialCable) -> None:
    """An idle lab's cables must not look for a reader 20 times a second: inotify on the
    device wakes them when ser2net opens it."""
    assert cable.opens is not None, "no inotify: the cable polls"
    thread_stat = f"/proc/self/task/{cable.thread.native_id}/stat"

    def cpu_ticks() -> int:
        fields = Path(thread_stat).read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def wakeups() -> int:
        status = Path(f"/proc/self/task/{cable.thread.native_id}/status").read_text()
        return sum(int(ln.split()[1]) for ln in status.splitlines()
                   if ln.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))

    before, ticks = wakeups(), cpu_ticks()
    time.sleep(1.0)
    assert wakeups() - before <= 2 and cpu_ticks() - ticks <= 1
    b = board(cable)
    fd = open_device(cable)
    b.sendall(b"=> ")
    assert read_device(fd) == b"=> "
    os.close(fd)
    b.close()
