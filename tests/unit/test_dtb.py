import struct

import pytest

from hil import dtb


def _fdt(padding: int = 0) -> bytes:
    strings = b"interrupts\0compatible\0"

    def prop(nameoff, value):
        return struct.pack(">III", dtb.PROP, len(value), nameoff) + value + b"\0" * (-len(value) % 4)

    body = (struct.pack(">I", dtb.BEGIN_NODE) + b"\0\0\0\0"
            + struct.pack(">I", dtb.BEGIN_NODE) + b"virtio_mmio@a003e00\0"
            + prop(11, b"virtio,mmio\0")
            + prop(0, dtb.pack([0, 47, 1, 0, 238, 1]))
            + struct.pack(">III", dtb.END_NODE, dtb.END_NODE, dtb.END))
    off_struct = 40
    off_strings = off_struct + len(body)
    total = off_strings + len(strings) + padding
    header = struct.pack(">10I", dtb.MAGIC, total, off_struct, off_strings, 0, 17, 16, 0,
                         len(strings), len(body))
    return header + body + strings + b"\0" * padding


def test_properties_point_at_their_values_and_can_be_replaced_in_place():
    blob = _fdt()
    props = dtb.properties(blob)
    node = dtb.find_node(props, "virtio_mmio@a003e00")
    off, value = props[(node, "interrupts")]
    assert dtb.cells(value) == [0, 47, 1, 0, 238, 1]
    changed = dtb.replace(blob, off + 12, dtb.pack([0, 1, 4]))
    assert dtb.cells(dtb.properties(changed)[(node, "interrupts")][1]) == [0, 47, 1, 0, 1, 4]
    assert dtb.properties(blob)[(node, "compatible")][1] == b"virtio,mmio\0"


def test_shrink_drops_qemus_padding_and_fixes_the_header():
    padded = _fdt(padding=1 << 20)
    small = dtb.shrink(padded)
    assert len(small) == len(_fdt()) and struct.unpack_from(">I", small, 4)[0] == len(small)
    assert dtb.properties(small) == dtb.properties(padded)


def test_not_a_dtb():
    with pytest.raises(ValueError):
        dtb.properties(b"\0" * 64)


def _consistent(blob: bytes) -> None:
    """The header accounts for every byte: sizes and offsets say where the blocks are."""
    _magic, total, off_struct, off_strings, _rsv, _v, _c, _b, size_strings, size_struct = \
        struct.unpack_from(">10I", blob, 0)
    assert total == len(blob) == off_strings + size_strings
    assert off_struct + size_struct == off_strings
    assert struct.unpack_from(">I", blob, off_strings - 4)[0] == dtb.END


def test_a_property_of_another_length_replaces_the_old_one_and_moves_what_follows():
    node = "/virtio_mmio@a003e00"
    blob = dtb.set_property(_fdt(), node, "interrupts", dtb.pack([0, 47, 1, 0, 48, 1, 0, 49, 1]))
    _consistent(blob)
    props = dtb.properties(blob)
    assert dtb.cells(props[(node, "interrupts")][1]) == [0, 47, 1, 0, 48, 1, 0, 49, 1]
    assert props[(node, "compatible")][1] == b"virtio,mmio\0"
    assert len(props) == 2


def test_a_new_property_and_a_new_node_get_their_names_in_the_strings_block():
    node = "/virtio_mmio@a003e00"
    blob = dtb.set_property(_fdt(), node, "interrupts-extended", dtb.pack([1, 0, 47, 1]))
    blob = dtb.delete_property(blob, node, "interrupts")
    blob = dtb.add_node(blob, "/", "intc@0", {"interrupt-controller": b"",
                                               "#interrupt-cells": dtb.pack([1]),
                                               "compatible": b"x,y\0"})
    _consistent(blob)
    props = dtb.properties(blob)
    assert set(props) == {(node, "compatible"), (node, "interrupts-extended"),
                          ("/intc@0", "interrupt-controller"), ("/intc@0", "#interrupt-cells"),
                          ("/intc@0", "compatible")}
    assert props[("/intc@0", "interrupt-controller")][1] == b""
    assert props[("/intc@0", "compatible")][1] == b"x,y\0"  # an existing string is reused
    assert blob.count(b"compatible\0") == 1
    assert dtb.free_phandle(props) == 1
    with_phandle = dtb.set_property(blob, "/intc@0", "phandle", dtb.pack([7]))
    assert dtb.free_phandle(dtb.properties(with_phandle)) == 8


def test_editing_what_is_not_there_says_so():
    with pytest.raises(KeyError, match="no node /nowhere"):
        dtb.set_property(_fdt(), "/nowhere", "x", b"")
    with pytest.raises(KeyError, match="has no property"):
        dtb.delete_property(_fdt(), "/virtio_mmio@a003e00", "x")
