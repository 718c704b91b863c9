"""Serial cables of the virtual lab: a tty device on the lab host that stays while the board's
power comes and goes, as a USB serial adapter's /dev/ttyUSB0 does.

The exporter exports a `RawSerialPort` through ser2net, which opens the device for each client
and needs a path under /dev. QEMU's own `-chardev pty` makes a new pty at every power-on and
removes it at power-off, dropping ser2net's client each time. So each cable is a pty pair held
by this process for the lab's lifetime (ser2net opens its slave, /dev/pts/N) and a unix socket
that the board's QEMU connects to with `-chardev socket,path=...` while it runs. Bytes are
relayed between the two. While no one holds the slave, the board's output is dropped, as a
real UART's is with no terminal attached; nothing stale waits for the next reader. While
someone does, what the pty cannot take yet (its buffer holds about 4 KiB, and QEMU sends
without a baud rate) waits here, up to BACKLOG bytes, for the reader to catch up: a slow
reader gets every byte, a reader that stopped reading costs at most BACKLOG, and the board
never waits (a real adapter's host that does not read loses data; it never stops the board).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import socket
import threading
import tty
from pathlib import Path

log = logging.getLogger("hil.cables")

# How often a cable whose slave is closed looks whether someone opened it, where inotify
# cannot say so: poll() reports POLLHUP on the master without pause while the slave is closed.
UNPLUGGED_POLL_S = 0.05
CHUNK = 4096
BACKLOG = 256 * 1024

_IN_CLOSE_WRITE, _IN_CLOSE_NOWRITE, _IN_OPEN = 0x08, 0x10, 0x20
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC


class OpenWatch:
    """inotify on a device node: readable when someone opens or closes it. An idle lab's
    cables then sleep until ser2net opens a console, instead of looking 20 times a second
    (which cost the lab's supervisor more CPU than anything else it does while idle)."""

    def __init__(self, path: str):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        mask = _IN_OPEN | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE
        if libc.inotify_add_watch(self.fd, path.encode(), mask) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")

    def drain(self) -> None:
        """Forget the events read so far: the cable looks at the pty itself."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        os.close(self.fd)


class SerialCable:
    """One cable: `device` (the slave, e.g. /dev/pts/5) <-> `socket_path` (the board end)."""

    def __init__(self, name: str, socket_path: Path):
        self.name = name
        self.socket_path = socket_path
        self.master, slave = os.openpty()
        # Raw, so that the line discipline neither echoes nor translates: ser2net sets its
        # own modes on open, and this is what the device looks like before that.
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        # Closing the only slave fd leaves the master in "other side closed" (POLLHUP), the
        # state it returns to whenever ser2net closes the device: one state to handle, not two.
        os.close(slave)
        os.set_blocking(self.master, False)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(socket_path))
        self.listener.listen(1)
        self.board: socket.socket | None = None
        # The board's output the pty could not take yet (see BACKLOG); dropped = overrun bytes.
        self.pending = bytearray()
        self.dropped = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self.opens: OpenWatch | None = None
        try:
            self.opens = OpenWatch(self.device)
        except OSError as e:
            log.info("cable %s: no inotify on %s (%s): polling", name, self.device, e)
        self.thread = threading.Thread(target=self._run, name=f"cable-{name}", daemon=True)

    def start(self) -> SerialCable:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self.thread.join(5)
        for s in (self.board, self.listener):
            if s is not None:
                s.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        for fd in (self.master, self._wake_r, self._wake_w):
            os.close(fd)
        if self.opens is not None:
            self.opens.close()

    def _slave_open(self) -> bool:
        p = select.poll()
        p.register(self.master, select.POLLIN)
        return not any(ev & select.POLLHUP for _, ev in p.poll(0))

    def _run(self) -> None:
        while not self._stop.is_set():
            plugged = self._slave_open()
            if not plugged:
                self.pending.clear()  # nobody to read it
            fds: list[int | socket.socket] = [self.listener, self._wake_r]
            if self.board is not None:
                fds.append(self.board)
            if plugged:
                fds.append(self.master)
            if self.opens is not None:
                fds.append(self.opens.fd)
            writable_fds = [self.master] if plugged and self.pending else []
            wait = None if plugged or self.opens is not None else UNPLUGGED_POLL_S
            readable, writable, _ = select.select(fds, writable_fds, [], wait)
            if self.opens is not None and self.opens.fd in readable:
                self.opens.drain()  # an open or a close: the next round looks again
            if writable:
                self._flush()
            if self.listener in readable:
                conn, _ = self.listener.accept()
                if self.board is not None:
                    # A new power-on while the old QEMU's socket lingers: the new one wins.
                    self.board.close()
                self.board = conn
                log.info("cable %s: board connected", self.name)
            if self.board is not None and self.board in readable:
                data = b""
                with contextlib.suppress(ConnectionError):
                    data = self.board.recv(CHUNK)
                if not data:
                    self.board.close()
                    self.board = None
                    log.info("cable %s: board disconnected", self.name)
                elif plugged:
                    self._to_device(data)
            if self.master in readable:
                try:
                    data = os.read(self.master, CHUNK)
                except OSError as e:
                    # EIO: the reader closed the device between poll and read.
                    if e.errno not in (errno.EIO, errno.EAGAIN):
                        raise
                    data = b""
                if data and self.board is not None:
                    with contextlib.suppress(OSError):
                        self.board.sendall(data)

    def _to_device(self, data: bytes) -> None:
        room = BACKLOG - len(self.pending)
        if len(data) > room:
            # The reader stopped reading: drop, as a UART overrun would.
            self.dropped += len(data) - max(room, 0)
            data = data[:max(room, 0)]
        self.pending += data
        self._flush()

    def _flush(self) -> None:
        """Write what the pty takes now; a partial write keeps the rest for later."""
        while self.pending:
            try:
                n = os.write(self.master, self.pending)
            except BlockingIOError:
                return
            except OSError:  # the reader closed the device meanwhile
                self.pending.clear()
                return
            del self.pending[:n]


class CableSet:
    """The cables of a lab, by name; sockets in `directory`."""

    def __init__(self, directory: Path, names: list[str]):
        directory.mkdir(parents=True, exist_ok=True)
        self.cables = {n: SerialCable(n, directory / f"{n}.sock").start() for n in names}

    def devices(self) -> dict[str, str]:
        return {n: c.device for n, c in self.cables.items()}

    def sockets(self) -> dict[str, str]:
        return {n: str(c.socket_path) for n, c in self.cables.items()}

    def close(self) -> None:
        for c in self.cables.values():
            c.stop()
