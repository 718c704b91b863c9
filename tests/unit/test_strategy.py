"""BoardGuestStrategy on fake drivers: labgrid's recovery (never_retry, invalidate, force)."""

import pytest
from labgrid import Environment
from labgrid.strategy import StrategyError

from hil.errors import BootTimeout

from .fake_lab import env_file, events


def strategy_for(tmp_path, **kw):
    env = Environment(str(env_file(tmp_path, **kw)))
    return env.get_target("main").get_driver("BoardGuestStrategy")


def test_the_guest_state_boots_the_board_then_the_guest(tmp_path):
    s = strategy_for(tmp_path)
    s.ensure("guest")
    assert s.path == ["off", "board", "guest"]
    assert events(tmp_path).count("power on") == 1
    assert s.boots == {"board": 1, "guest": 1}


def test_a_board_that_never_reaches_its_shell_breaks_the_strategy_for_good(tmp_path):
    s = strategy_for(tmp_path, board_boot="hang")
    with pytest.raises(StrategyError) as e:
        s.ensure("board")
    assert isinstance(e.value.__cause__, BootTimeout)
    assert isinstance(s.broken, BootTimeout)
    # labgrid's never_retry: no second power-on, the same error again.
    with pytest.raises(StrategyError):
        s.ensure("board")
    assert events(tmp_path).count("power on") == 1


def test_a_guest_that_fails_to_boot_leaves_its_board_up(tmp_path):
    s = strategy_for(tmp_path, guest_boot="hang")
    s.ensure("board")
    with pytest.raises(BootTimeout):
        s.ensure("guest")
    assert s.path == ["off", "board"] and not s.broken
    # The board is still there to be asked.
    assert s.board_shell.run("true")[2] == 0
    assert events(tmp_path).count("power on") == 1


def test_after_invalidate_the_next_case_starts_from_a_power_cycled_board(tmp_path):
    s = strategy_for(tmp_path)
    s.ensure("guest")
    s.invalidate()  # what the plugin does after a shell timeout
    s.ensure("board")
    assert events(tmp_path).count("power on") == 2
    assert events(tmp_path).index("power off", events(tmp_path).index("power on") + 1)


def test_force_takes_over_a_board_that_is_already_up_without_powering_it(tmp_path):
    s = strategy_for(tmp_path)
    s.force("guest")
    assert s.path == ["off", "board", "guest"]
    s.ensure("guest")
    assert s.shell("guest").check("true") == ""
    assert "power on" not in events(tmp_path) and s.boots == {"board": 0, "guest": 0}


def test_stopping_the_guest_vmm_escalates_to_sigkill(tmp_path):
    s = strategy_for(tmp_path)
    s.ensure("guest")
    s.vmm.stop()
    stops = [e for e in events(tmp_path) if "kill $p" in e]
    assert stops and all("kill -9 $p" in e for e in stops)
