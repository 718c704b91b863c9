"""places/boards.yaml and the exporter files that hold its places."""

from pathlib import Path

import jinja2
import pytest
from labgrid.util.yaml import load

from hil.firmware import dtbs
from hil.measure import throughput
from hil.preflight import envfile, exporters

REPO = Path(__file__).resolve().parents[2]
BOARDS = REPO / "places" / "boards.yaml"
EXPORTERS = sorted((REPO / "places" / "exporters").glob("*.yaml"))
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
        assert options["boot"] in exporters.BOOT_NEEDS
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


def test_exporter_files_parse_with_labgrids_loader_and_resource_classes():
    assert EXPORTERS
    for path in EXPORTERS:
        assert exporters.resource_problems(path.name, exporters.load(path)) == []


def test_every_place_is_in_exactly_one_exporter_group():
    loaded = {p.name: exporters.load(p) for p in EXPORTERS}
    assert exporters.place_problems(_env(), loaded) == []


def test_a_single_hash_comment_is_a_jinja_statement(tmp_path):
    # Why the exporter files comment with '##': labgrid renders them with Jinja2 first.
    bad = tmp_path / "e.yaml"
    bad.write_text("# a YAML comment\ng:\n  NetworkService: {address: a, username: b}\n")
    with pytest.raises(jinja2.TemplateSyntaxError, match="unknown tag 'a'"):
        exporters.load(bad)


GROUP = {"location": "x",
         "power": {"cls": "NetworkPowerPort", "model": "gude8316", "host": "p", "index": 1},
         "board-console": {"cls": "USBSerialPort", "match": {"ID_SERIAL_SHORT": "A"}},
         "sdmux": {"cls": "USBSDMuxDevice", "match": {"@ID_PATH": "p"}}}
ENV = {"targets": {"b": {"resources": {"RemotePlace": {"name": "b"}},
                         "options": {"boot": "usbsdmux",
                                     "board_console": {"resource": "board-console"},
                                     "guest_console": {"kind": "tcp", "resource": "board-console"}}}}}


def test_resource_problems_name_the_parameter_and_the_backend():
    assert exporters.resource_problems("e", {"b": GROUP}) == []
    bad = {"b": {"power": {"cls": "NetworkPowerPort", "model": "gude9999", "hots": "p",
                           "index": 1},
                 "Nonesuch": {}}}
    found = exporters.resource_problems("e", bad)
    assert any("takes no parameter 'hots'" in p for p in found)
    assert any("needs host" in p for p in found)
    assert any("no labgrid power backend 'gude9999'" in p for p in found)
    assert any("no resource class Nonesuch" in p for p in found)


def test_place_problems_find_missing_duplicate_and_incomplete_groups():
    assert exporters.place_problems(ENV, {"e": {"b": GROUP}}) == []
    assert "found none" in exporters.place_problems(ENV, {"e": {}})[0]
    assert "found e, f" in exporters.place_problems(ENV, {"e": {"b": GROUP}, "f": {"b": GROUP}})[0]
    tftp = {"targets": {"b": {**ENV["targets"]["b"],
                              "options": {**ENV["targets"]["b"]["options"], "boot": "uboot-tftp",
                                          "guest_console": {"resource": "guest-console"}}}}}
    found = exporters.place_problems(tftp, {"e": {"b": GROUP}})
    assert any("boots by uboot-tftp but has no TFTPProvider" in p for p in found)
    assert any("no resource 'guest-console'" in p for p in found)


def test_every_board_boots_through_a_strategy_of_its_boot_path_with_its_own_dtb():
    env = _env()
    strategies = {"usbsdmux": "SDMuxBoardGuestStrategy", "uboot-tftp": "UBootBoardGuestStrategy"}
    for name, target in env["targets"].items():
        drivers = {next(iter(d)): next(iter(d.values())) for d in target["drivers"]}
        strategy = drivers[strategies[target["options"]["boot"]]]
        assert env["images"][strategy["dtb"]].endswith("/dtbs/" + target["options"]["dtb"]), name
        console = target["options"]["board_console"]["device"]
        assert f"console={console}," in strategy["bootargs"], name
        guest = target["options"]["guest_console"]
        serial = drivers["GuestVMMDriver"]["serial"]
        assert serial == (f"/dev/{guest['device']}" if guest["kind"] == "uart"
                          else f"tcp::{guest['port']},server=on,wait=off"), name
