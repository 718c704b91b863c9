"""A small reader and in-place editor of flattened device trees (DTB).

Tests use it to change a guest's device tree without restructuring it (values keep their
length), for example to give one of a device's lines to a line another driver holds.
"""

from __future__ import annotations

import struct

MAGIC = 0xD00DFEED
BEGIN_NODE, END_NODE, PROP, NOP, END = 1, 2, 3, 4, 9


def _header(dtb: bytes) -> tuple[int, ...]:
    fields = struct.unpack_from(">10I", dtb, 0)
    if fields[0] != MAGIC:
        raise ValueError("not a flattened device tree")
    return fields


def properties(dtb: bytes) -> dict[tuple[str, str], tuple[int, bytes]]:
    """{(node path, property name): (offset of the value in the blob, value)}."""
    _magic, _size, off_struct, off_strings, *_ = _header(dtb)
    out: dict[tuple[str, str], tuple[int, bytes]] = {}
    path: list[str] = []
    pos = off_struct
    while True:
        (token,) = struct.unpack_from(">I", dtb, pos)
        pos += 4
        if token == BEGIN_NODE:
            end = dtb.index(b"\0", pos)
            path.append(dtb[pos:end].decode())
            pos = (end + 4) & ~3
        elif token == END_NODE:
            path.pop()
        elif token == PROP:
            length, nameoff = struct.unpack_from(">II", dtb, pos)
            pos += 8
            name_end = dtb.index(b"\0", off_strings + nameoff)
            name = dtb[off_strings + nameoff:name_end].decode()
            out[("/".join(path) or "/", name)] = (pos, dtb[pos:pos + length])
            pos = (pos + length + 3) & ~3
        elif token == NOP:
            continue
        elif token == END:
            return out
        else:
            raise ValueError(f"bad FDT token {token:#x} at {pos - 4}")


def shrink(dtb: bytes) -> bytes:
    """Drop the padding after the strings block and say so in the header.

    QEMU's `dumpdtb` pads the blob to 1 MiB, and a kernel given that blob back with `-dtb`
    does not boot; the content itself is a few kilobytes.
    """
    _magic, _size, off_struct, off_strings, _rsv, _ver, _comp, _boot, size_strings, size_struct = \
        _header(dtb)
    end = max(off_struct + size_struct, off_strings + size_strings)
    return dtb[:4] + struct.pack(">I", end) + dtb[8:end]


def replace(dtb: bytes, offset: int, value: bytes) -> bytes:
    return dtb[:offset] + value + dtb[offset + len(value):]


def cells(value: bytes) -> list[int]:
    return list(struct.unpack(f">{len(value) // 4}I", value))


def pack(values: list[int]) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def find_node(props: dict[tuple[str, str], tuple[int, bytes]], name: str) -> str:
    """The path of the node whose last component is `name` (e.g. virtio_mmio@a003e00)."""
    found = {p for p, _ in props if p.rsplit("/", 1)[-1] == name}
    if len(found) != 1:
        raise KeyError(f"{len(found)} nodes named {name}")
    return found.pop()
