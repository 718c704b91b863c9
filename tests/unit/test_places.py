"""Before anything is powered, a place of a lab must exist on the coordinator and be ours."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.lab import places

REPO = Path(__file__).resolve().parents[2]
ME = "ci-host/root"


def shown(rc: int, out: str = "", err: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], rc, out, err)


@pytest.mark.parametrize(("result", "says"), [
    (shown(1, err="Error: place pattern nope matches nothing"),
     "place 'nope' is not on the coordinator at 127.0.0.1:1: `labgrid-client -x 127.0.0.1:1 "
     "places` lists its places"),
    (shown(1, err="coordinator is unavailable: failed to connect to all addresses"),
     "no labgrid coordinator answers at 127.0.0.1:1"),
    (shown(0, "Place 'nope':\n  acquired: None\n"),
     "place 'nope' is not acquired: `labgrid-client -p nope acquire` first"),
    (shown(0, "Place 'nope':\n  acquired: other-host/alice\n"),
     "place 'nope' is held by other-host/alice, not by this client (ci-host/root)"),
])
def test_each_problem_with_a_place_says_what_to_do(result, says: str) -> None:
    found = places.problem("nope", result, "127.0.0.1:1", ME)
    assert found is not None and found.startswith(says)


def test_a_place_this_client_holds_is_fine() -> None:
    assert places.problem("p", shown(0, "Place 'p':\n  acquired: ci-host/root\n"),
                          "127.0.0.1:1", ME) is None


def test_the_place_comes_from_lg_place(monkeypatch) -> None:
    monkeypatch.setenv("LG_PLACE", "virtual-1")
    assert places.remote_places(REPO / "places" / "virtual-lab.yaml") == {"main": "virtual-1"}
    assert places.remote_places(REPO / "places" / "virtual.yaml") == {}
    monkeypatch.delenv("LG_PLACE")
    with pytest.raises(ConfigError, match="export LG_PLACE=<place>"):
        places.remote_places(REPO / "places" / "virtual-lab.yaml")
