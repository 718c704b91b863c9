"""U-Boot over TFTP: the commands U-Boot is given, staging paths, and the TFTP server."""

import os
import re
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from labgrid import Environment

from hil.labgrid import uboot_commands as uboot
from hil.labgrid.driver.tftpserver import resolve_address, server_command

REPO = Path(__file__).resolve().parents[2]


def plan(**kw):
    return uboot.TFTPBoot(**{"ipaddr": "10.0.2.15", "netmask": "255.255.255.0",
                             "gatewayip": "10.0.2.2", "serverip": "192.0.2.2", "kernel": "/t/Image",
                             "initrd": "/t/initramfs.cpio", "bootargs": "console=ttyAMA0 quiet",
                             **kw})


def test_the_initramfs_is_fetched_last_and_booted_with_its_own_size():
    cmds = uboot.load_commands(plan())
    assert cmds == [
        "setenv netretry no",
        "setenv ipaddr 10.0.2.15",
        "setenv netmask 255.255.255.0",
        "setenv gatewayip 10.0.2.2",
        "setenv serverip 192.0.2.2",
        "setenv bootargs 'console=ttyAMA0 quiet'",
        "tftpboot ${kernel_addr_r} /t/Image",
        "tftpboot ${ramdisk_addr_r} /t/initramfs.cpio",
        "setenv hil_initrd_size ${filesize}",
        "setenv bootcmd 'booti ${kernel_addr_r} ${ramdisk_addr_r}:${hil_initrd_size} "
        "${fdtcontroladdr}'",
    ]


def test_a_named_dtb_is_fetched_and_booted_instead_of_u_boots_own():
    cmds = uboot.load_commands(plan(dtb="/t/board.dtb"))
    assert "tftpboot ${fdt_addr_r} /t/board.dtb" in cmds
    assert cmds.index("tftpboot ${fdt_addr_r} /t/board.dtb") < cmds.index(
        "tftpboot ${ramdisk_addr_r} /t/initramfs.cpio")
    assert cmds[-1].endswith(":${hil_initrd_size} ${fdt_addr_r}'")


def test_a_quote_in_bootargs_is_refused():
    with pytest.raises(ValueError):
        uboot.load_commands(plan(bootargs="x='y'"))


@pytest.mark.parametrize(("change", "says"), [
    ({"serverip": "10.0.2.2; reset"}, "serverip must be an IPv4 address, got '10.0.2.2; reset'"),
    ({"kernel": "/t/$(reboot)"}, "kernel: TFTP path '/t/$(reboot)' has characters"),
    ({"dtb": "/t/a b.dtb"}, "dtb: TFTP path '/t/a b.dtb' has characters"),
])
def test_values_u_boot_would_interpret_are_refused_with_their_name(change, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        uboot.load_commands(plan(**change))


def test_a_board_on_a_lab_network_takes_its_address_by_dhcp():
    cmds = uboot.load_commands(plan(ipaddr="dhcp", netmask="-", gatewayip="-"))
    assert cmds[:4] == ["setenv netretry no", "setenv autoload no", "dhcp",
                        "setenv serverip 192.0.2.2"]


def test_tftpd_hpa_serves_absolute_names_without_chroot():
    cmd = server_command("/usr/sbin/in.tftpd", "127.0.0.1:69", "/tmp/x/", "me")
    assert cmd[:3] == ["/usr/sbin/in.tftpd", "--listen", "--foreground"]
    assert "--secure" not in cmd and cmd[-1] == "/tmp/x/"


def test_an_auto_server_address_is_this_hosts_primary_one():
    assert resolve_address("auto:69", "192.0.2.2") == ("192.0.2.2", "192.0.2.2:69")
    assert resolve_address("127.0.0.1:6969", "") == ("127.0.0.1", "127.0.0.1:6969")


def uboot_env(tmp_path, port=69):
    data = yaml.safe_load((REPO / "places" / "virtual-uboot.yaml").read_text())
    provider = data["targets"]["main"]["resources"]["TFTPProvider"]
    provider["internal"] = provider["external"] = f"{tmp_path}/tftp/"
    for entry in data["targets"]["main"]["drivers"]:
        if "TFTPServerDriver" in entry:
            entry["TFTPServerDriver"]["address"] = f"127.0.0.1:{port}"
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return Environment(str(path))


@pytest.fixture
def tftp_dir(tmp_path):
    return tmp_path / "tftp"


def test_the_u_boot_place_stages_images_under_the_tftp_dir_by_absolute_path(tmp_path, tftp_dir):
    target = uboot_env(tmp_path).get_target("main")
    image = tmp_path / "Image"
    image.write_bytes(b"kernel")
    tftp = target.get_driver("TFTPProviderDriver")
    target.activate(tftp)
    asked = tftp.stage(str(image))
    assert asked == f"{tftp_dir}/Image"
    assert os.path.realpath(asked) == str(image)
    strategy = target.get_driver("BoardGuestStrategy")
    assert type(strategy).__name__ == "UBootBoardGuestStrategy"


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("in.tftpd", path="/usr/sbin"), reason="tftpd-hpa missing")
def test_the_tftp_server_serves_a_staged_file_while_active(tmp_path, tftp_dir):
    port = free_udp_port()
    target = uboot_env(tmp_path, port).get_target("main")
    image = tmp_path / "Image"
    image.write_bytes(b"kernel")
    server = target.get_driver("TFTPServerDriver")
    target.activate(server)
    try:
        tftp = target.get_driver("TFTPProviderDriver")
        target.activate(tftp)
        name = tftp.stage(str(image))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"\x00\x01" + name.encode() + b"\x00octet\x00", ("127.0.0.1", port))
            data, _ = s.recvfrom(600)
        assert data == b"\x00\x03\x00\x01kernel"  # DATA, block 1, the whole file
    finally:
        target.deactivate(server)
    assert server.process is None
