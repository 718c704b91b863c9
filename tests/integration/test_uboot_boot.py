"""The virtual board booting as the real ones do: U-Boot, TFTP from this host, booti (which
unpacks the gzip'd kernel)."""

from pathlib import Path

from hil.labgrid.shell import Shell

REPO = Path(__file__).resolve().parents[2]


def test_the_board_boots_through_u_boot_and_tftp_at_el2(built_images, record_property):
    from labgrid import Environment

    import hil.labgrid  # noqa: F401
    from hil.labgrid.image import image_path

    env = Environment(str(REPO / "places" / "virtual-uboot.yaml"))
    target = env.get_target("main")
    strategy = target.get_driver("UBootBoardGuestStrategy")
    assert Path(image_path(target, "board-kernel")).read_bytes()[:2] == b"\x1f\x8b"
    try:
        strategy.transition("board")
        assert strategy.path == ["off", "uboot", "board"]
        board: Shell = strategy.shell("board")
        assert "All CPU(s) started at EL2" in board.check("dmesg")
        assert board.run("test -c /dev/kvm").ok
        for name in ("uboot_prompt_s", "tftp_s", "board_boot_s", "power_on_to_board_s"):
            record_property(name, round(strategy.timings[name], 1))
    finally:
        strategy.transition("off")
