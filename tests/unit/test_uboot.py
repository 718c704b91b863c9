"""U-Boot over TFTP: the commands U-Boot is given, staging paths, and the TFTP server."""

import os
import re
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from labgrid import Environment
from labgrid.strategy import StrategyError

from hil.errors import ConfigError
from hil.labgrid import uboot_commands as uboot
from hil.labgrid.driver.tftpserver import resolve_address, server_command

from .fake_lab import env_file, events

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


def test_a_compressed_kernel_is_unpacked_by_booti_from_its_own_size():
    cmds = uboot.load_commands(plan(kernel="/t/Image.gz", kernel_comp_addr_r="0x50000000"))
    fetched = cmds.index("tftpboot ${kernel_addr_r} /t/Image.gz")
    # Right after the kernel's transfer: `filesize` is the compressed kernel's.
    assert cmds[fetched + 1:fetched + 3] == ["setenv kernel_comp_addr_r 0x50000000",
                                             "setenv kernel_comp_size ${filesize}"]
    assert not any("kernel_comp" in c for c in uboot.load_commands(plan()))


def test_an_unpacking_address_that_is_not_one_is_named():
    with pytest.raises(ValueError, match="kernel_comp_addr_r must be a hexadecimal address"):
        uboot.load_commands(plan(kernel_comp_addr_r="${loadaddr}"))


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x1f\x8b\x08\x00", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"MZ\x00\x00", None)])
def test_a_kernels_compression_is_told_by_its_first_bytes(head, kind):
    assert uboot.compression(head) == kind


def uboot_fake_env(tmp_path, kernel: bytes, **strategy):
    """A U-Boot board of fake power and consoles (tests/lab_fakes.py) with a local TFTP
    directory: enough for the strategy's checks before power-on."""
    path = env_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    (tmp_path / "Image").write_bytes(kernel)
    (tmp_path / "initramfs.cpio.gz").write_bytes(b"\x1f\x8b initramfs")
    data["images"] = {"board-kernel": str(tmp_path / "Image"),
                      "board-initrd": str(tmp_path / "initramfs.cpio.gz")}
    target = data["targets"]["main"]
    target["resources"] = {"TFTPProvider": {"internal": f"{tmp_path}/tftp/",
                                            "external": f"{tmp_path}/tftp/"}}
    drivers = target["drivers"]
    base = drivers.pop()["BoardGuestStrategy"]
    drivers += [
        {"UBootDriver": {"name": "board-uboot", "bindings": {"console": "board-console"},
                         "prompt": "=> "}},
        {"TFTPProviderDriver": {}},
        {"UBootBoardGuestStrategy": {**base, "bindings": {**base["bindings"],
                                                          "uboot": "board-uboot"},
                                     "serverip": "192.0.2.2", "tftp_probe": False,
                                     **strategy}},
    ]
    path.write_text(yaml.safe_dump(data))
    return Environment(str(path)).get_target("main").get_driver("UBootBoardGuestStrategy")


def test_a_compressed_kernel_without_an_unpacking_address_is_named_before_power_on(tmp_path):
    s = uboot_fake_env(tmp_path, b"\x1f\x8b\x08\x00 gzip'd Image")
    with pytest.raises(StrategyError) as e:
        s.transition("uboot")
    assert isinstance(e.value.__cause__, ConfigError)
    assert "is gzip-compressed: give kernel_comp_addr_r" in str(e.value.__cause__)
    assert "power on" not in events(tmp_path)


def test_a_bad_unpacking_address_is_named_before_power_on(tmp_path):
    s = uboot_fake_env(tmp_path, b"\x1f\x8b\x08\x00 gzip'd Image", kernel_comp_addr_r="80M")
    with pytest.raises(StrategyError) as e:
        s.transition("uboot")
    assert "kernel_comp_addr_r must be a hexadecimal address" in str(e.value.__cause__)
    assert "power on" not in events(tmp_path)
