"""hil/preflight/udev_check.py on literal udev data shaped like a lab host's."""

from hil.preflight.udev_check import (
    Device,
    Resource,
    Status,
    check,
    effective_match,
    exit_code,
    from_data,
    matches,
    render,
    snippet,
    to_data,
)
from hil.verdict import ExitCode

PCI = Device("0000:00:14.0", {"SUBSYSTEM": "pci", "DRIVER": "xhci_hcd"})
ROOT_HUB = Device("usb1", {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device"}, parents=(PCI,))
HUB = Device("1-1", {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "ID_PATH": "pci-0000:00:14.0-usb-0:1"},
             parents=(ROOT_HUB, PCI))


def ftdi(tty: str, serial: str, port: str, iface: str = "00", model: str = "6001") -> Device:
    """A ttyUSB of an FTDI adapter on hub port `port` (e.g. "1.1"), as udev and pyudev show it:
    the tty, then its usb-serial port, USB interface, USB device, hub, root hub, controller."""
    path = f"pci-0000:00:14.0-usb-0:{port}"
    usb = Device(f"1-{port}", {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "ID_PATH": path,
                               "ID_VENDOR_ID": "0403", "ID_MODEL_ID": model},
                 attributes={"serial": serial, "idVendor": "0403", "idProduct": model},
                 parents=(HUB, ROOT_HUB, PCI))
    intf = Device(f"1-{port}:1.{int(iface)}", {"SUBSYSTEM": "usb", "DEVTYPE": "usb_interface",
                                               "DRIVER": "ftdi_sio"}, parents=(usb, *usb.parents))
    port_dev = Device(tty, {"SUBSYSTEM": "usb-serial", "DRIVER": "ftdi_sio"},
                      parents=(intf, *intf.parents))
    return Device(tty, {
        "SUBSYSTEM": "tty", "DEVNAME": f"/dev/{tty}", "ID_VENDOR_ID": "0403", "ID_MODEL_ID": model,
        "ID_SERIAL": f"FTDI_TTL232R-3V3_{serial}", "ID_SERIAL_SHORT": serial,
        "ID_USB_INTERFACE_NUM": iface, "ID_PATH": f"{path}:1.{int(iface)}"},
        attributes={"close_delay": "50"}, fields={"device_node": f"/dev/{tty}"},
        parents=(port_dev, *port_dev.parents))


TTYS0 = Device("ttyS0", {"SUBSYSTEM": "tty", "DEVNAME": "/dev/ttyS0"},
               parents=(Device("00:00", {"SUBSYSTEM": "pnp"}),))


def serial(match: dict[str, str], name: str = "board-console") -> Resource:
    return Resource("juno-r2", name, "USBSerialPort", match)


def test_two_adapters_with_their_own_serial_numbers_each_resolve():
    devices = [TTYS0, ftdi("ttyUSB0", "FT4JUNO0", "1.1"), ftdi("ttyUSB1", "FT4LS1A0", "1.2")]
    a = check(serial({"ID_SERIAL_SHORT": "FT4JUNO0"}), devices)
    b = check(serial({"ID_SERIAL_SHORT": "FT4LS1A0"}), devices)
    assert (a.status, a.matched[0].device.sys_name) == (Status.OK, "ttyUSB0")
    assert (b.status, b.matched[0].device.sys_name) == (Status.OK, "ttyUSB1")
    assert exit_code([a, b]) is ExitCode.PASSED
    assert render(a) == ["OK        juno-r2/board-console (USBSerialPort, "
                         "match: {ID_SERIAL_SHORT: 'FT4JUNO0'}): ttyUSB0"]


def test_two_adapters_sharing_a_serial_number_are_ambiguous_and_told_apart_by_id_path():
    devices = [ftdi("ttyUSB0", "A10K0001", "1.1"), ftdi("ttyUSB1", "A10K0001", "1.2")]
    f = check(serial({"ID_SERIAL_SHORT": "A10K0001"}), devices)
    assert f.status is Status.AMBIGUOUS
    assert [c.device.sys_name for c in f.matched] == ["ttyUSB0", "ttyUSB1"]
    # Only what differs is shown, and the suggestion needs no serial number.
    assert f.matched[0].keys == {"ID_PATH": "pci-0000:00:14.0-usb-0:1.1:1.0"}
    assert f.matched[0].suggestion == {"ID_PATH": "pci-0000:00:14.0-usb-0:1.1:1.0"}
    assert f.matched[1].suggestion == {"ID_PATH": "pci-0000:00:14.0-usb-0:1.2:1.0"}
    assert exit_code([f]) is ExitCode.INCONCLUSIVE
    lines = render(f)
    assert lines[0].startswith("AMBIGUOUS juno-r2/board-console") and "2 devices fit" in lines[0]
    assert lines[1] == ("    ttyUSB0: ID_PATH=pci-0000:00:14.0-usb-0:1.1:1.0 -> "
                        "match: {ID_PATH: 'pci-0000:00:14.0-usb-0:1.1:1.0'}")
    # Each suggestion, put back in the file, names its device alone.
    for c in f.matched:
        assert check(serial(dict(c.suggestion or {})), devices).status is Status.OK


def test_the_interfaces_of_one_quad_uart_are_told_apart_by_path_or_interface_number():
    devices = [ftdi(f"ttyUSB{i}", "0123ZCU102A", "2.4", iface=f"0{i}", model="6011") for i in range(4)]
    assert check(serial({"ID_SERIAL_SHORT": "0123ZCU102A", "ID_USB_INTERFACE_NUM": "01"}),
                 devices).status is Status.OK
    f = check(serial({"ID_SERIAL_SHORT": "0123ZCU102A"}), devices)
    assert f.status is Status.AMBIGUOUS
    assert set(f.matched[1].keys) == {"ID_PATH", "ID_USB_INTERFACE_NUM"}


def test_an_unplugged_adapter_is_missing_and_the_nearest_present_ones_are_named():
    devices = [TTYS0, ftdi("ttyUSB0", "FT4LS1A0", "1.2"), ftdi("ttyUSB1", "FT4JUNO1", "1.1")]
    f = check(serial({"ID_SERIAL_SHORT": "FT4JUNO0"}), devices)
    assert f.status is Status.MISSING
    # The nearest first; ttyS0 is no USB serial port, so never a candidate.
    assert [c.device.sys_name for c in f.nearest] == ["ttyUSB1", "ttyUSB0"]
    assert f.nearest[0].keys["ID_SERIAL_SHORT"] == "FT4JUNO1"
    assert exit_code([f]) is ExitCode.INCONCLUSIVE
    lines = render(f)
    assert lines[0].endswith("no device fits (unplugged, or renumbered?)")
    assert lines[1].startswith("    nearest: ttyUSB1: ID_SERIAL_SHORT=FT4JUNO1 ID_PATH=")


def test_missing_with_no_usb_serial_port_at_all():
    f = check(serial({"ID_SERIAL_SHORT": "FT4JUNO0"}), [TTYS0])
    assert (f.status, f.nearest) == (Status.MISSING, ())
    assert render(f)[1] == ("    no USBSerialPort candidate at all "
                            "(1 devices in subsystem tty, none of its class)")


def test_a_parent_match_on_id_path_finds_the_adapter_on_that_hub_port():
    devices = [ftdi("ttyUSB0", "FT4RPI40", "1.1"), ftdi("ttyUSB1", "FT4RPI41", "1.2")]
    f = check(serial({"@ID_PATH": "pci-0000:00:14.0-usb-0:1.1"}), devices)
    assert (f.status, f.matched[0].device.sys_name) == (Status.OK, "ttyUSB0")
    # The hub's own path is an ancestor of both: ambiguous, told apart by their serials.
    f = check(serial({"@ID_PATH": "pci-0000:00:14.0-usb-0:1"}), devices)
    assert f.status is Status.AMBIGUOUS
    assert f.matched[1].suggestion == {"ID_SERIAL_SHORT": "FT4RPI41"}
    # A missing parent match names the devices' nearest ancestor values.
    f = check(serial({"@ID_PATH": "pci-0000:00:14.0-usb-0:1.3"}), devices)
    assert f.status is Status.MISSING
    assert f.nearest[0].keys["@ID_PATH"] == "pci-0000:00:14.0-usb-0:1.1"


def test_labgrid_match_semantics():
    dev = ftdi("ttyUSB0", "FT4JUNO0", "1.1")
    match = effective_match("USBSerialPort", {"sys_name": "ttyUSB0"})
    assert match == {"sys_name": "ttyUSB0", "SUBSYSTEM": "tty", "@SUBSYSTEM": "usb"}
    assert matches(dev, match)
    assert matches(dev, {"@serial": "FT4JUNO0"})  # a sysfs attribute, by its bare name
    assert not matches(dev, {"ATTR{serial}": "FT4JUNO0"})
    assert matches(dev, {"device_node": "/dev/ttyUSB0"})  # a pyudev Device attribute
    assert not matches(dev, {"ID_USB_INTERFACE_NUM": 0})  # YAML's unquoted 00: an int
    # Each @ key may be met by a different ancestor.
    assert matches(dev, {"@DRIVER": "xhci_hcd", "@DEVTYPE": "usb_interface"})
    # The class's keys win over the file's.
    assert effective_match("USBSerialPort", {"SUBSYSTEM": "usb"})["SUBSYSTEM"] == "tty"
    assert effective_match("USBSDMuxDevice", {"@ID_PATH": "p"}) == {
        "@ID_PATH": "p", "ID_VENDOR_ID": "0424", "ID_MODEL_ID": "4041", "SUBSYSTEM": "usb"}


def test_notes_name_matches_that_can_never_fit():
    f = check(serial({"ATTR{serial}": "FT4JUNO0", "ID_USB_INTERFACE_NUM": 0}),
              [ftdi("ttyUSB0", "FT4JUNO0", "1.1")])
    assert f.status is Status.MISSING
    assert any("bare name: serial" in n for n in f.notes)
    assert any("is a int" in n and "quote it" in n for n in f.notes)


def test_an_sd_mux_by_its_hub_port():
    mux = Device("1-2.2", {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "ID_VENDOR_ID": "0424",
                           "ID_MODEL_ID": "4041", "ID_SERIAL_SHORT": "000000000042"},
                 parents=(Device("1-2", {"SUBSYSTEM": "usb", "ID_PATH": "pci-0000:00:14.0-usb-0:2"}),))
    sdmux = Resource("rpi4", "sdmux", "USBSDMuxDevice", {"@ID_PATH": "pci-0000:00:14.0-usb-0:2"})
    assert check(sdmux, [mux, ftdi("ttyUSB0", "X", "1.1")]).status is Status.OK


def test_two_sd_muxes_are_told_apart_by_their_hub_ports():
    def mux(port: str) -> Device:
        hub_port = Device(f"1-{port}", {"SUBSYSTEM": "usb", "ID_PATH": f"pci-0000:00:14.0-usb-0:{port}"})
        return Device(f"1-{port}.1", {"SUBSYSTEM": "usb", "ID_VENDOR_ID": "0424", "ID_MODEL_ID": "4041"},
                      parents=(hub_port,))

    f = check(Resource("rpi4", "sdmux", "USBSDMuxDevice", {}), [mux("2.1"), mux("2.2")])
    assert f.status is Status.AMBIGUOUS
    assert f.matched[1].suggestion == {"@ID_PATH": "pci-0000:00:14.0-usb-0:2.2"}


def test_a_class_with_its_own_filter_binds_what_labgrids_filter_takes():
    # IMXUSBLoader takes only the vendor and model pairs of its own table (labgrid's
    # filter_match): of two devices on the same hub port, only the i.MX one.
    def usb(name: str, vendor: str, model: str) -> Device:
        return Device(name, {"SUBSYSTEM": "usb", "ID_PATH": "p", "ID_VENDOR_ID": vendor,
                             "ID_MODEL_ID": model})

    loader = Resource("g", "r", "IMXUSBLoader", {"ID_PATH": "p"})
    f = check(loader, [usb("1-1", "0403", "6001"), usb("1-2", "15a2", "0054")])
    assert f.status is Status.OK and f.matched[0].device.sys_name == "1-2"
    assert check(loader, [usb("1-1", "0403", "6001")]).status is Status.MISSING


def test_a_class_labgrid_cannot_build_from_a_match_alone_is_skipped_not_failed():
    f = check(Resource("g", "r", "MatchedSysfsGPIO", {"ID_PATH": "p"}), [])  # needs a pin
    assert f.status is Status.SKIPPED
    assert exit_code([f]) is ExitCode.PASSED


def test_snippet_quotes_values_and_parent_keys():
    assert snippet({"@ID_PATH": "a", "ID_USB_INTERFACE_NUM": "00", "x": "it's"}) == (
        "match: {'@ID_PATH': 'a', ID_USB_INTERFACE_NUM: '00', x: 'it''s'}")


def test_devices_round_trip_through_plain_data():
    dev = ftdi("ttyUSB0", "FT4JUNO0", "1.1")
    assert from_data(to_data(dev)) == dev
