"""Before anything is powered, a place of a lab must exist on the coordinator and be ours."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.preflight import places
from hil.scheduling.coordinator import Place

REPO = Path(__file__).resolve().parents[2]
ME = "ci-host/root"


@pytest.mark.parametrize(("found", "says"), [
    (None, "place 'nope' is not on the coordinator at 127.0.0.1:1: `hil lab status` lists its "
           "places"),
    (Place("nope"), "place 'nope' is not acquired: reserve it (`--hil-reserve name=nope`)"),
    (Place("nope", acquired="other-host/alice"),
     "place 'nope' is held by other-host/alice, not by this client (ci-host/root)"),
    # Another session of the same user on the same host is another holder.
    (Place("nope", acquired="ci-host/root+pytest-7-abc"),
     "place 'nope' is held by ci-host/root+pytest-7-abc, not by this client (ci-host/root)"),
])
def test_each_problem_with_a_place_says_what_to_do(found, says: str) -> None:
    problem = places.problem("nope", found, "127.0.0.1:1", ME)
    assert problem is not None and problem.startswith(says)


def test_a_place_this_client_holds_is_fine() -> None:
    assert places.problem("p", Place("p", acquired=ME), "127.0.0.1:1", ME) is None


def test_no_coordinator_is_named_before_anything_is_powered(monkeypatch) -> None:
    monkeypatch.setenv("LG_PLACE", "virtual-1")
    with pytest.raises(ConfigError, match=r"no labgrid coordinator answers at 127\.0\.0\.1:1"):
        places.check(REPO / "places" / "virtual-lab.yaml",
                     environ={"LG_COORDINATOR": "127.0.0.1:1", "LG_PLACE": "virtual-1"},
                     connect_timeout=1.0)


def test_the_place_comes_from_lg_place(monkeypatch) -> None:
    monkeypatch.setenv("LG_PLACE", "virtual-1")
    assert places.remote_places(REPO / "places" / "virtual-lab.yaml") == {"main": "virtual-1"}
    assert places.remote_places(REPO / "places" / "virtual.yaml") == {}
    monkeypatch.delenv("LG_PLACE")
    with pytest.raises(ConfigError, match="export LG_PLACE=<place>"):
        places.remote_places(REPO / "places" / "virtual-lab.yaml")


BOARDS = {"rpi4": "rpi4", "juno-r2": "juno-r2", "local": None}


@pytest.mark.parametrize("wanted, place, chosen", [
    ("juno-r2", None, "juno-r2"),          # named
    (None, "rpi4", "rpi4"),                # the place reserved (LG_PLACE)
    ("local", "rpi4", "local"),            # named wins over the place
])
def test_the_target_a_run_qualifies(wanted, place, chosen) -> None:
    assert places.choose_target(BOARDS, wanted, place) == chosen


def test_main_is_labgrids_default_and_a_single_target_needs_no_name() -> None:
    assert places.choose_target({"main": "virtual-0", "other": None}, None, "x") == "main"
    assert places.choose_target({"only": None}, None, None) == "only"


@pytest.mark.parametrize("wanted, place, says", [
    (None, None, "choose one with --hil-target NAME"),
    (None, "no-such-place", "choose one with --hil-target NAME"),
    ("zcu102", None, "--hil-target zcu102: the environment has no such target (it has rpi4, "
                     "juno-r2, local)"),
])
def test_an_ambiguous_or_unknown_target_says_what_to_give(wanted, place, says) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        places.choose_target(BOARDS, wanted, place)


def test_every_board_of_the_lab_file_is_a_target_named_after_its_place() -> None:
    found = places.target_places(REPO / "places" / "boards.yaml")
    assert len(found) >= 4 and all(t == p for t, p in found.items())
