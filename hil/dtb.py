"""A guest's flattened device tree (DTB), read and edited through libfdt (pylibfdt).

Tests change what QEMU describes to the guest: a line of one device given to another, a queue
line described as level-triggered, a line on an interrupt controller that never probes.
libfdt is the device-tree library of dtc, U-Boot and QEMU themselves; this module only names
nodes the way the testcases do (by their node name) and speaks in 32-bit cells.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

import libfdt

# Room for what a test adds: a few properties and a node. pack() gives back what is unused.
SLACK = 4096


def pack(values: list[int]) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def unpack(value: bytes) -> list[int]:
    if len(value) % 4:
        raise ValueError(f"a value of {len(value)} bytes is not a list of cells")
    return list(struct.unpack(f">{len(value) // 4}I", value))


class DeviceTree:
    def __init__(self, blob: bytes):
        try:
            self.fdt = libfdt.Fdt(bytearray(blob))
        except libfdt.FdtException as e:
            raise ValueError(f"not a flattened device tree: {e}") from None
        # QEMU's dumpdtb pads the blob to 1 MiB: packed first, then room for the edits.
        self.fdt.pack()
        self.fdt.resize(self.fdt.totalsize() + SLACK)

    def to_bytes(self) -> bytes:
        self.fdt.pack()
        return bytes(self.fdt.as_bytearray())

    def _nodes(self) -> Iterator[tuple[int, str]]:
        offset, depth = 0, 0
        while offset >= 0 and depth >= 0:  # past the root's end: depth -1
            yield offset, self.fdt.get_path(offset)
            offset, depth = self.fdt.next_node(offset, depth, libfdt.QUIET_NOTFOUND)

    def find_node(self, name: str) -> str:
        """The path of the one node called `name` (`virtio_mmio@a003e00`)."""
        found = [path for _, path in self._nodes() if path.rsplit("/", 1)[-1] == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} nodes named {name}")
        return found[0]

    def _offset(self, path: str) -> int:
        return int(self.fdt.path_offset(path))

    def get(self, path: str, name: str) -> bytes:
        return bytes(self.fdt.getprop(self._offset(path), name))

    def cells(self, path: str, name: str) -> list[int]:
        return unpack(self.get(path, name))

    def set(self, path: str, name: str, value: bytes) -> None:
        self.fdt.setprop(self._offset(path), name, value)

    def set_cells(self, path: str, name: str, values: list[int]) -> None:
        self.set(path, name, pack(values))

    def delete(self, path: str, name: str) -> None:
        self.fdt.delprop(self._offset(path), name)

    def add_node(self, parent: str, name: str, props: Mapping[str, bytes]) -> str:
        offset = self.fdt.add_subnode(self._offset(parent), name)
        for prop, value in props.items():
            self.fdt.setprop(offset, prop, value)
        return str(self.fdt.get_path(offset))

    def free_phandle(self) -> int:
        """A phandle no node has."""
        return 1 + max((int(self.fdt.get_phandle(offset)) for offset, _ in self._nodes()),
                       default=0)
