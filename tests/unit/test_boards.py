"""places/boards.yaml: the real GICv2 boards."""

from pathlib import Path

from labgrid.util.yaml import load

from hil import throughput
from hil.build import dtbs
from hil.lab import envfile

REPO = Path(__file__).resolve().parents[2]
BOARDS = REPO / "places" / "boards.yaml"
REQUIRED = ("board_cpus", "gic", "dtb", "boot", "board_console", "guest_console", "thresholds")


def _env() -> dict:
    return load(BOARDS.read_text())


def test_boards_pass_the_environment_check():
    envfile.check(BOARDS)


def test_every_board_is_a_remote_place_with_its_options():
    targets = _env()["targets"]
    assert len(targets) >= 4
    for name, target in targets.items():
        assert target["resources"]["RemotePlace"]["name"] == name
        assert isinstance(target["features"], list)
        options = target["options"]
        assert [k for k in REQUIRED if k not in options] == [], name
        assert options["gic"] == "v2" and options["board_cpus"] >= 1
        assert options["boot"] in ("usbsdmux", "uboot-tftp")
        assert dtbs.dtb_problem(options["dtb"]) is None
        assert throughput.threshold_problems(options["thresholds"]) == []
        guest = options["guest_console"]
        assert guest["kind"] in ("uart", "tcp") and guest["resource"]
        # The guest's serial is on the board (a UART or a port of the board), never a fixed
        # port of the machine running the tests.
        assert "host" not in guest


def test_dtb_requests_come_from_every_board():
    wanted = dtbs.requests(_env(), "places/boards.yaml")
    assert {r.board for r in wanted} == set(_env()["targets"])
