"""hil.dtb: the testcases' edits of a guest's device tree, through libfdt."""

import libfdt
import pytest

from hil import dtb

NET = "/virtio_mmio@a003e00"


def _qemu_like_blob() -> bytes:
    """A tree as QEMU's dumpdtb writes one: a GIC with a phandle, a virtio-mmio node with
    three lines, and the blob padded to 1 MiB."""
    fdt = libfdt.Fdt.create_empty_tree(4096)
    root = 0
    fdt.setprop_u32(root, "interrupt-parent", 0x8002)
    gic = fdt.add_subnode(root, "intc@8000000")
    fdt.setprop(gic, "interrupt-controller", b"")
    fdt.setprop_u32(gic, "phandle", 0x8002)
    for name, spis in (("virtio_mmio@a003c00", (46, 47, 48)), ("virtio_mmio@a003e00", (49, 50, 51))):
        node = fdt.add_subnode(root, name)
        fdt.setprop_str(node, "compatible", "virtio,mmio")
        fdt.setprop(node, "interrupts", dtb.pack([v for s in spis for v in (0, s, 1)]))
    fdt.pack()
    fdt.resize(1 << 20)
    return bytes(fdt.as_bytearray())


def test_a_value_is_changed_in_place_and_the_padding_is_gone():
    tree = dtb.DeviceTree(_qemu_like_blob())
    node = tree.find_node("virtio_mmio@a003e00")
    assert node == NET
    specs = tree.cells(node, "interrupts")
    assert specs == [0, 49, 1, 0, 50, 1, 0, 51, 1]
    tree.set_cells(node, "interrupts", [*specs[:6], 0, 47, 1])
    blob = tree.to_bytes()
    assert len(blob) < 4096
    again = dtb.DeviceTree(blob)
    assert again.cells(NET, "interrupts") == [0, 49, 1, 0, 50, 1, 0, 47, 1]
    assert again.get("/virtio_mmio@a003c00", "compatible") == b"virtio,mmio\0"


def test_a_line_on_a_new_controller_replaces_the_interrupts_property():
    tree = dtb.DeviceTree(_qemu_like_blob())
    (gic,) = tree.cells("/", "interrupt-parent")
    absent = tree.free_phandle()
    assert absent > gic
    path = tree.add_node("/", "hil-absent-intc", {
        "compatible": b"hil,absent-interrupt-controller\0", "interrupt-controller": b"",
        "#interrupt-cells": dtb.pack([1]), "phandle": dtb.pack([absent])})
    tree.set_cells(NET, "interrupts-extended", [gic, 0, 49, 1, absent, 0, gic, 0, 51, 1])
    tree.delete(NET, "interrupts")
    again = dtb.DeviceTree(tree.to_bytes())
    assert path == "/hil-absent-intc"
    assert again.cells(path, "phandle") == [absent]
    assert again.cells(NET, "interrupts-extended")[4:6] == [absent, 0]
    with pytest.raises(libfdt.FdtException):
        again.get(NET, "interrupts")


def test_a_node_name_must_name_one_node_and_a_blob_must_be_a_tree():
    tree = dtb.DeviceTree(_qemu_like_blob())
    with pytest.raises(KeyError):
        tree.find_node("virtio_mmio@0")
    with pytest.raises(ValueError, match="not a flattened device tree"):
        dtb.DeviceTree(b"\0" * 64)
    with pytest.raises(ValueError, match="not a list of cells"):
        dtb.unpack(b"abc")
