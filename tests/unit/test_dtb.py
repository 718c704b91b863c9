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
