"""SDMuxBoardGuestStrategy on fake drivers: with the board off, the card goes to the host, gets
the kernel, DTB, initramfs and boot configuration, goes back to the board, and only then is
the board powered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from labgrid import Environment
from labgrid.strategy import StrategyError

from hil.errors import ArtifactMissing, ConfigError
from hil.labgrid.strategy.sdmux import boot_files

from .fake_lab import env_file, events


def sdmux_env(tmp: Path, boot_config: str, *, dtb_exists: bool = True) -> Environment:
    path = env_file(tmp)
    data = yaml.safe_load(path.read_text())
    images = tmp / "images"
    images.mkdir()
    for name in ("Image", "initramfs.cpio.gz") + (("bcm2711-rpi-4-b.dtb",) if dtb_exists else ()):
        (images / name).write_text(f"contents of {name}")
    data["images"] = {"board-kernel": str(images / "Image"),
                      "board-initrd": str(images / "initramfs.cpio.gz"),
                      "board-dtb": str(images / "bcm2711-rpi-4-b.dtb")}
    card = tmp / "card"
    (card / "extlinux").mkdir(parents=True)  # as the lab prepared the card once
    log = str(tmp / "events.log")
    drivers = data["targets"]["main"]["drivers"]
    strategy = drivers.pop()["BoardGuestStrategy"]
    drivers += [
        {"FakeSDMuxDriver": {"name": "sdmux", "log": log}},
        {"FakeStorageDriver": {"name": "storage", "log": log, "card": str(card)}},
        {"SDMuxBoardGuestStrategy": {
            **strategy, "boot_config": boot_config,
            "bindings": {**strategy["bindings"], "sdmux": "sdmux", "storage": "storage"}}},
    ]
    path.write_text(yaml.safe_dump(data))
    return Environment(str(path))


def test_the_card_is_written_with_the_board_off_and_handed_back_before_power_on(tmp_path):
    s = sdmux_env(tmp_path, "rpi").get_target("main").get_driver("SDMuxBoardGuestStrategy")
    s.ensure("board")
    assert s.path == ["off", "deployed", "board"]
    ev = [e for e in events(tmp_path) if not e.startswith("board-shell")]
    assert ev == ["power off", "sdmux host",
                  "write 1:/ Image initramfs.cpio.gz bcm2711-rpi-4-b.dtb",
                  "write 1:/config.txt config.txt", "write 1:/cmdline.txt cmdline.txt",
                  "sdmux dut", "power on"]
    card = tmp_path / "card"
    assert (card / "Image").read_text() == "contents of Image"
    assert "device_tree=bcm2711-rpi-4-b.dtb" in (card / "config.txt").read_text()
    assert (card / "cmdline.txt").read_text() == "console=ttyAMA0 hil.role=board quiet\n"


def test_u_boot_boards_get_an_extlinux_entry_naming_the_dtb(tmp_path):
    s = sdmux_env(tmp_path, "extlinux").get_target("main").get_driver("SDMuxBoardGuestStrategy")
    s.ensure("board")
    conf = (tmp_path / "card" / "extlinux" / "extlinux.conf").read_text()
    assert "  kernel /Image\n  initrd /initramfs.cpio.gz\n  fdt /bcm2711-rpi-4-b.dtb\n" in conf


def test_a_missing_dtb_stops_the_deployment_before_the_card_is_touched(tmp_path):
    env = sdmux_env(tmp_path, "rpi", dtb_exists=False)
    s = env.get_target("main").get_driver("SDMuxBoardGuestStrategy")
    with pytest.raises(StrategyError) as e:
        s.ensure("board")
    assert isinstance(e.value.__cause__, ArtifactMissing)
    assert "board-dtb" in str(e.value.__cause__) and "hil firmware build" in str(e.value.__cause__)
    assert "sdmux host" not in events(tmp_path) and "power on" not in events(tmp_path)


def test_an_unknown_boot_configuration_is_named() -> None:
    with pytest.raises(ConfigError, match="boot_config must be one of extlinux, rpi"):
        boot_files("grub", "x.dtb", "")
