"""Which device trees the board image carries, from literal environments and listings."""

from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.firmware import dtbs

ENV = {"targets": {
    "main": {"options": {"board_cpus": 2}},  # the virtual board: no DTB
    "rpi4": {"options": {"dtb": "broadcom/bcm2711-rpi-4-b.dtb"}},
    "juno": {"options": {"dtb": "arm/juno-r2.dtb"}},
}}
SHIPPED = {"broadcom/bcm2711-rpi-4-b.dtb", "broadcom/bcm2711-rpi-400.dtb", "arm/juno-r2.dtb",
           "arm/juno-r2-scmi.dtb"}
PACKAGE = "linux-image-6.12.117+deb12-arm64-unsigned"


def test_requests_take_each_targets_dtb_and_skip_boards_without():
    got = dtbs.requests(ENV, "places/x.yaml")
    assert [(r.board, r.dtb) for r in got] == [("juno", "arm/juno-r2.dtb"),
                                              ("rpi4", "broadcom/bcm2711-rpi-4-b.dtb")]


@pytest.mark.parametrize("dtb", ["bcm2711-rpi-4-b.dtb", "/boot/x.dtb", "../../etc/x.dtb",
                                 "broadcom/bcm2711-rpi-4-b.dts", "", 3])
def test_a_dtb_outside_the_package_directory_is_refused_with_the_board(dtb):
    with pytest.raises(ConfigError, match=r"places/x.yaml: target 'b': options.dtb"):
        dtbs.requests({"targets": {"b": {"options": {"dtb": dtb}}}}, "places/x.yaml")


def test_missing_names_board_file_and_the_nearest_shipped_names():
    wanted = dtbs.requests({"targets": {"pi": {"options": {"dtb": "broadcom/bcm2711-rpi-4.dtb"}}}},
                           "places/boards.yaml")
    (msg,) = dtbs.missing(wanted, SHIPPED, PACKAGE)
    assert msg.startswith(f"board 'pi' (places/boards.yaml): {PACKAGE} ships no "
                          "broadcom/bcm2711-rpi-4.dtb")
    assert "broadcom/bcm2711-rpi-4-b.dtb" in msg
    assert dtbs.missing(dtbs.requests(ENV, "e"), SHIPPED, PACKAGE) == []


def test_install_copies_each_dtb_once_and_fails_on_a_missing_one(tmp_path: Path):
    src = tmp_path / "usr/lib/linux-image-6.12.117+deb12-arm64"
    for name in SHIPPED:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(name.encode())
    out = tmp_path / "out"
    both = dtbs.requests({"targets": {"a": {"options": {"dtb": "arm/juno-r2.dtb"}},
                                      "b": {"options": {"dtb": "arm/juno-r2.dtb"}}}}, "e")
    sums = dtbs.install(both, src, PACKAGE, out)
    assert list(sums) == ["arm/juno-r2.dtb"]
    assert (out / "dtbs/arm/juno-r2.dtb").read_bytes() == b"arm/juno-r2.dtb"
    gone = dtbs.requests({"targets": {"zcu": {"options": {"dtb": "xilinx/zcu.dtb"}}}}, "e")
    with pytest.raises(ConfigError, match=r"board 'zcu' .* ships no xilinx/zcu\.dtb"):
        dtbs.install(gone, src, PACKAGE, tmp_path / "out2")


def test_requests_need_targets():
    with pytest.raises(ConfigError, match="no 'targets:'"):
        dtbs.requests({}, "e")


def test_the_image_recipe_takes_the_dtbs_of_the_real_boards():
    from hil.firmware import images

    recipe = images.Recipe.load()
    assert recipe.dtbs_from == ("places/boards.yaml",)
    wanted = dtbs.load_requests([images.REPO / p for p in recipe.dtbs_from], images.REPO)
    assert {r.dtb for r in wanted} >= {"broadcom/bcm2711-rpi-4-b.dtb", "arm/juno-r2.dtb",
                                       "freescale/fsl-ls1043a-rdb.dtb"}
    assert all(r.source == "places/boards.yaml" for r in wanted)
