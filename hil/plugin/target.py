"""labgrid's `target` fixture is always the target named `main`; a run qualifies the one chosen
in pytest_configure (hil.preflight.places.choose_target), as a lab's file with one target per board
(places/boards.yaml) needs. hooks.pytest_configure registers this module after labgrid's
plugin, so that its `target` is the one used."""

from __future__ import annotations

from typing import Any

import pytest

from hil.plugin.session import current_run


@pytest.fixture(scope="session")
def target(env: Any, request: pytest.FixtureRequest) -> Any:
    run = current_run(request.config)
    name = run.target if run is not None else "main"
    found = env.get_target(name)
    if found is None:
        raise pytest.UsageError(f"the environment has no target {name!r}")
    return found
