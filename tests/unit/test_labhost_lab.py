"""The lab-host VM as the virtual lab's console host: which adapter each cable ends in, and
the exporter configuration that finds them by udev."""

from __future__ import annotations

import pytest

from hil.virtual_lab.labhost import lab
from hil.virtual_lab.labhost.vm import XHCI_SLOT

DEVICES = {"virtual-0-console": "/dev/pts/3", "virtual-0-guest": "/dev/pts/4",
           "virtual-1-console": "/dev/pts/5", "virtual-1-guest": "/dev/pts/6"}
BOARDS = ["virtual-0", "virtual-1"]


def test_each_cable_ends_in_an_adapter_of_its_own_on_its_own_port() -> None:
    found = lab.adapters(BOARDS, DEVICES)
    assert [(a.serial, a.port, a.chardev) for a in found] == [
        ("HILV0CON", 1, "serial,path=/dev/pts/3"), ("HILV0GST", 2, "serial,path=/dev/pts/4"),
        ("HILV1CON", 3, "serial,path=/dev/pts/5"), ("HILV1GST", 4, "serial,path=/dev/pts/6")]


def test_more_boards_than_the_vms_usb_ports_take_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 2 boards"):
        lab.adapters(["a", "b", "c"], {f"{b}-{e}": "" for b in "abc" for e in lab.ENDS})


def test_the_exporter_matches_the_board_console_by_serial_and_the_guest_console_by_path() -> None:
    config = lab.exporter_config(BOARDS, lab.adapters(BOARDS, DEVICES), "rack 1")
    assert config["virtual-1"] == {
        "location": "rack 1",
        "board-console": {"cls": "USBSerialPort", "speed": 115200,
                          "match": {"ID_SERIAL_SHORT": "HILV1CON"}},
        "guest-console": {"cls": "USBSerialPort", "speed": 115200,
                          "match": {"ID_PATH": f"pci-0000:00:{XHCI_SLOT:02x}.0-usb-0:4:1.0"}},
    }
    assert lab.wanted_resources(BOARDS) == {"hil-labhost/virtual-0/NetworkSerialPort",
                                            "hil-labhost/virtual-1/NetworkSerialPort"}


@pytest.mark.parametrize("lab_name, host", [
    ("lab", "hil-labhost-lab"), ("hil-lab", "hil-labhost-hil-lab"),
    ("My_Lab.2", "hil-labhost-my-lab-2"), ("__", "hil-labhost-lab")])
def test_the_vms_host_name_is_a_valid_one_from_the_labs_directory(lab_name: str,
                                                                  host: str) -> None:
    assert lab.host_name(lab_name) == host
