"""The labgrid place a target stands for, as its RemotePlace saw it when the environment was made."""

from __future__ import annotations

from typing import Any

from labgrid.exceptions import NoResourceFoundError
from labgrid.resource import RemotePlace


def place_tags(target: Any) -> dict[str, str]:
    """The tags of a target's place on the coordinator ({} for a board on this machine), as
    labgrid's RemotePlace read them when the environment was made."""
    try:
        return dict(target.get_resource(RemotePlace, wait_avail=False).tags)
    except NoResourceFoundError:
        return {}
