"""The guest's virtio-mmio transport: its interrupt mode, named where tests and people look."""

import pytest

from hil.labgrid import probes
from hil.measure import virtio

pytestmark = pytest.mark.guest

DISK = "/tmp/hil-disk.img"


def devices(guest):
    """The guest's virtio-mmio devices (its shell's virtio console is on PCI)."""
    return [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND))
            if d.transport == "mmio"]


def assert_single_mode(guest, found):
    rows = probes.guest_interrupts(guest)
    for dev in found:
        assert dev.irq_mode == "single", f"{dev.name} ({dev.kind}) is in mode {dev.irq_mode}"
        assert list(virtio.lines_of(rows, dev.name)) == [""], \
            f"{dev.name} should have one line named {dev.name}"


def test_patched_guest_uses_single_mode_and_networks_on_a_single_line_vmm(guest):
    found = devices(guest)
    assert [d.kind for d in found] == ["net"]
    assert found[0].irq_mode is not None, "guest kernel lacks the multi-line driver (irq_mode)"
    assert_single_mode(guest, found)
    said = probes.kernel_lines(guest, "interrupt lines")
    assert "using 1 interrupt lines (single)" in "\n".join(said), said
    probes.ping_board(guest, 2)


def test_blk_rng_and_console_work_beside_net_on_the_same_transport(board, boot_guest):
    board.check(f"dd if=/dev/urandom of={DISK} bs=64k count=16 2>/dev/null")
    disk_sum = board.check(f"md5sum < {DISK}").split()[0]
    # The shell on the PL011: this guest's virtio console is the mmio one, hvc0.
    guest = boot_guest(console="uart", extra=(
        "-drive", f"file={DISK},if=none,id=d0,format=raw",
        "-device", "virtio-blk-device,drive=d0",
        "-device", "virtio-rng-device",
        "-chardev", "file,id=vc0,path=/tmp/hil-vc0.out",
        "-device", "virtio-serial-device", "-device", "virtconsole,chardev=vc0",
    ))
    found = devices(guest)
    assert sorted(d.kind for d in found) == ["blk", "console", "net", "rng"]
    assert_single_mode(guest, found)
    assert guest.check("md5sum < /dev/vda").split()[0] == disk_sum
    assert guest.check("dd if=/dev/hwrng bs=32 count=1 2>/dev/null | wc -c").strip() == "32"
    guest.check("echo hello-from-hvc0 > /dev/hvc0")
    assert "hello-from-hvc0" in board.check("cat /tmp/hil-vc0.out")
    probes.ping_board(guest, 1)
