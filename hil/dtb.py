"""A small reader and in-place editor of flattened device trees (DTB).

Tests use it to change a guest's device tree: a value in place (for example to give one of a
device's lines to a line another driver holds), or its structure (a property of another length,
a new node), which moves what follows and is accounted for in the header.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = 0xD00DFEED
BEGIN_NODE, END_NODE, PROP, NOP, END = 1, 2, 3, 4, 9


def _header(dtb: bytes) -> tuple[int, ...]:
    fields = struct.unpack_from(">10I", dtb, 0)
    if fields[0] != MAGIC:
        raise ValueError("not a flattened device tree")
    return fields


@dataclass(frozen=True)
class _Token:
    kind: int         # BEGIN_NODE, END_NODE or PROP
    path: str         # the node's path (for PROP and END_NODE, the node it is in)
    start: int        # where the token starts in the blob
    end: int          # where the next token starts
    name: str = ""    # the property's name
    value_start: int = 0
    value_end: int = 0


def _tokens(dtb: bytes) -> Iterator[_Token]:
    _magic, _size, off_struct, off_strings, *_ = _header(dtb)
    path: list[str] = []
    pos = off_struct
    while True:
        start = pos
        (token,) = struct.unpack_from(">I", dtb, pos)
        pos += 4
        if token == BEGIN_NODE:
            end = dtb.index(b"\0", pos)
            path.append(dtb[pos:end].decode())
            pos = (end + 4) & ~3
            yield _Token(BEGIN_NODE, _join(path), start, pos)
        elif token == END_NODE:
            yield _Token(END_NODE, _join(path), start, pos)
            path.pop()
        elif token == PROP:
            length, nameoff = struct.unpack_from(">II", dtb, pos)
            pos += 8
            name_end = dtb.index(b"\0", off_strings + nameoff)
            name = dtb[off_strings + nameoff:name_end].decode()
            value = pos
            pos = (pos + length + 3) & ~3
            yield _Token(PROP, _join(path), start, pos, name, value, value + length)
        elif token == NOP:
            continue
        elif token == END:
            return
        else:
            raise ValueError(f"bad FDT token {token:#x} at {pos - 4}")


def _join(path: list[str]) -> str:
    return "/".join(path) or "/"


def properties(dtb: bytes) -> dict[tuple[str, str], tuple[int, bytes]]:
    """{(node path, property name): (offset of the value in the blob, value)}."""
    return {(t.path, t.name): (t.value_start, dtb[t.value_start:t.value_end])
            for t in _tokens(dtb) if t.kind == PROP}


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


def _splice(dtb: bytes, start: int, end: int, new: bytes) -> bytes:
    """Replace dtb[start:end] of the structure block by `new`, fixing the header's sizes."""
    fields = list(_header(dtb))
    delta = len(new) - (end - start)
    fields[1] += delta                      # totalsize
    if fields[3] > fields[2]:               # the strings block follows the structure block
        fields[3] += delta
    fields[9] += delta                      # size_dt_struct
    out = dtb[:start] + new + dtb[end:]
    return struct.pack(">10I", *fields) + out[40:]


def _string(dtb: bytes, name: str) -> tuple[bytes, int]:
    """The blob with `name` in its strings block, and its offset there."""
    fields = list(_header(dtb))
    off_strings, size_strings = fields[3], fields[8]
    block = dtb[off_strings:off_strings + size_strings]
    wanted = name.encode() + b"\0"
    at = 0
    for string in block.split(b"\0")[:-1]:
        if string + b"\0" == wanted:
            return dtb, at
        at += len(string) + 1
    end = off_strings + size_strings
    fields[1] += len(wanted)
    fields[8] += len(wanted)
    if fields[2] > fields[3]:  # a structure block after the strings moves down
        fields[2] += len(wanted)
    out = dtb[:end] + wanted + dtb[end:]
    return struct.pack(">10I", *fields) + out[40:], size_strings


def _prop(nameoff: int, value: bytes) -> bytes:
    return struct.pack(">III", PROP, len(value), nameoff) + value + b"\0" * (-len(value) % 4)


def _node_token(dtb: bytes, path: str, kind: int) -> _Token:
    for token in _tokens(dtb):
        if token.kind == kind and token.path == path:
            return token
    raise KeyError(f"no node {path}")


def set_property(dtb: bytes, path: str, name: str, value: bytes) -> bytes:
    """Node `path` with property `name` set to `value`, replaced or added."""
    dtb, nameoff = _string(dtb, name)
    new = _prop(nameoff, value)
    for token in _tokens(dtb):
        if token.kind == PROP and token.path == path and token.name == name:
            return _splice(dtb, token.start, token.end, new)
    at = _node_token(dtb, path, BEGIN_NODE).end  # properties come before subnodes
    return _splice(dtb, at, at, new)


def delete_property(dtb: bytes, path: str, name: str) -> bytes:
    for token in _tokens(dtb):
        if token.kind == PROP and token.path == path and token.name == name:
            return _splice(dtb, token.start, token.end, b"")
    raise KeyError(f"{path} has no property {name}")


def add_node(dtb: bytes, parent: str, name: str, props: dict[str, bytes]) -> bytes:
    """`parent` with a new last child node `name` holding `props`."""
    body = b""
    for prop_name, value in props.items():
        dtb, nameoff = _string(dtb, prop_name)
        body += _prop(nameoff, value)
    encoded = name.encode() + b"\0"
    node = (struct.pack(">I", BEGIN_NODE) + encoded + b"\0" * (-len(encoded) % 4) + body
            + struct.pack(">I", END_NODE))
    at = _node_token(dtb, parent, END_NODE).start
    return _splice(dtb, at, at, node)


def free_phandle(props: dict[tuple[str, str], tuple[int, bytes]]) -> int:
    """A phandle no node of the tree uses."""
    return 1 + max((cells(value)[0] for (_, name), (_, value) in props.items()
                    if name in ("phandle", "linux,phandle")), default=0)
