import subprocess

import pytest

from hil.measure import interrupts


def test_guest_rows_carry_counts_controller_hwirq_trigger_and_name(data):
    rows = interrupts.parse((data / "guest-interrupts-stock.txt").read_text())
    virtio = interrupts.by_name(rows, "virtio0")
    assert len(virtio) == 1
    row = virtio[0]
    assert (row.irq, row.controller, row.hwirq, row.trigger, row.name) == (
        "17", "GIC-0", 79, "Edge", "virtio0")
    assert len(row.counts) == 1
    assert interrupts.gic_spi(row) == 47


def test_board_rows_with_two_cpus_and_msi_controllers(data):
    rows = interrupts.parse((data / "board-interrupts.txt").read_text())
    vgic = next(r for r in rows if r.name == "vgic")
    assert vgic.counts == (0, 0) and vgic.controller == "GICv2" and vgic.hwirq == 25
    msix = next(r for r in rows if r.name == "virtio0-virtqueues")
    assert msix.controller.startswith("GICv2m-PCI-MSIX") and interrupts.gic_spi(msix) is None
    ipi = next(r for r in rows if r.irq == "IPI0")
    assert not ipi.numbered and ipi.name == "Rescheduling interrupts" and len(ipi.counts) == 2


def test_names_with_spaces_stay_whole():
    text = "           CPU0       CPU1\n 12:  1  2  GICv2  27 Level     kvm guest vtimer\n"
    assert interrupts.parse(text)[0].name == "kvm guest vtimer"


def test_delta_is_per_cpu_growth():
    before = interrupts.parse("  CPU0 CPU1\n 5: 1 2 GICv2 40 Edge a\n")
    after = interrupts.parse("  CPU0 CPU1\n 5: 4 2 GICv2 40 Edge a\n")
    assert interrupts.delta(before, after) == {"5": (3, 0)}


def test_rejects_other_text():
    with pytest.raises(ValueError):
        interrupts.parse("Linux version 6.12\n")


@pytest.mark.parametrize("sample", ["guest-interrupts-mq-after.txt", "board-interrupts.txt"])
def test_the_squeezed_read_keeps_every_numbered_row_and_drops_the_ipis(data, sample):
    path = data / sample
    squeezed = subprocess.run(["sh", "-c", interrupts.COMMAND.replace("/proc/interrupts", str(path))],
                              capture_output=True, text=True, check=True).stdout
    whole = interrupts.parse(path.read_text())
    rows = interrupts.parse(squeezed)
    assert [r for r in rows if r.numbered] == [r for r in whole if r.numbered]
    assert not [r for r in rows if r.irq.startswith("IPI")]
    assert len(squeezed) < len(path.read_text()) * 0.6
