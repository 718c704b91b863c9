"""A writer for the kernel's initramfs format (cpio "newc"), without needing root.

Device nodes such as /dev/console can be written as entries, which `cpio` run as a normal
user could not create on disk first.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import BinaryIO

TRAILER = "TRAILER!!!"


class CpioWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.written: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        name = name.lstrip("/") or "."
        fields = [
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
            len(name) + 1, 0,
        ]
        self.ino += 1
        header = "070701" + "".join(f"{f:08x}" for f in fields)
        self.out.write(header.encode() + name.encode() + b"\0")
        self._pad(110 + len(name) + 1)
        self.out.write(data)
        self._pad(len(data))

    def _pad(self, n: int) -> None:
        self.out.write(b"\0" * ((4 - n % 4) % 4))

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/" + "/".join(parts[:i]))

    def dir(self, path: str, mode: int = 0o755) -> None:
        if path in self.written:
            return
        self._parents(path)
        self.written.add(path)
        self._entry(path, stat.S_IFDIR | mode, nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.written.add(path)
        self._entry(path, stat.S_IFREG | mode, data)

    def copy(self, path: str, src: Path, mode: int | None = None) -> None:
        st = src.stat()
        self.file(path, src.read_bytes(), mode if mode is not None else st.st_mode & 0o7777)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.written.add(path)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(path)
        self.written.add(path)
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def close(self) -> None:
        self._entry(TRAILER, 0)
        # The kernel reads the archive in 512-byte blocks.
        pos = self.out.tell()
        self.out.write(b"\0" * ((512 - pos % 512) % 512))
