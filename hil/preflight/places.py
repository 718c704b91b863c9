"""Is the labgrid place an environment names there, and ours? Asked of the coordinator before
anything is powered, so that a wrong LG_PLACE or a place someone else holds gets one message
instead of an error in every case."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from labgrid.config import Config
from labgrid.exceptions import InvalidConfigError

from hil.errors import ConfigError
from hil.scheduling.coordinator import Coordinator, CoordinatorUnreachable, Place

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default


def target_places(env_path: Path) -> dict[str, str | None]:
    """target -> the name of its RemotePlace, or None for a target on this machine."""
    try:
        targets = Config(str(env_path)).get_targets()
    except InvalidConfigError as e:
        if "LG_PLACE" in str(e):
            raise ConfigError(f"{env_path} reaches a place named by LG_PLACE, which is not set: "
                              "export LG_PLACE=<place> (`hil lab env` prints one, "
                              "`labgrid-client places` lists them)") from None
        raise ConfigError(f"{env_path}: {e}") from None
    out: dict[str, str | None] = {}
    for name, t in targets.items():
        resources = t.get("resources")
        remote = isinstance(resources, Mapping) and "RemotePlace" in resources
        out[name] = str(resources["RemotePlace"]["name"]) if remote else None
    return out


def remote_places(env_path: Path) -> dict[str, str]:
    """target -> place name, for the targets that are RemotePlaces."""
    return {t: p for t, p in target_places(env_path).items() if p is not None}


def choose_target(targets: Mapping[str, str | None], wanted: str | None,
                  place: str | None) -> str:
    """The target a run qualifies: `wanted` (--hil-target); else `main`, labgrid's default;
    else the one whose RemotePlace is `place` (LG_PLACE, set by a reservation); else the only
    one. A lab's file (places/boards.yaml) names one target per board, after its place."""
    names = ", ".join(targets) or "none"
    if wanted:
        if wanted not in targets:
            raise ConfigError(f"--hil-target {wanted}: the environment has no such target "
                              f"(it has {names})")
        return wanted
    if "main" in targets:
        return "main"
    if place:
        hits = [t for t, p in targets.items() if p == place]
        if len(hits) == 1:
            return hits[0]
    if len(targets) == 1:
        return next(iter(targets))
    raise ConfigError(f"the environment has targets {names} and none named 'main': choose one "
                      "with --hil-target NAME, or reserve its place (--hil-reserve name=PLACE)")


def problem(place: str, found: Place | None, coordinator: str, me: str) -> str | None:
    """What keeps this client (`me`, host/user) from using `place` (None: not there)."""
    if found is None:
        return (f"place '{place}' is not on the coordinator at {coordinator}: "
                "`hil lab status` lists its places")
    if found.acquired is None:
        return (f"place '{place}' is not acquired: reserve it (`--hil-reserve name={place}`), "
                f"or `labgrid-client -p {place} acquire` first and release it after the run")
    if found.acquired != me:
        return f"place '{place}' is held by {found.acquired}, not by this client ({me})"
    return None


def check(env_path: Path, target: str | None = None,
          environ: Mapping[str, str] = os.environ, connect_timeout: float = 10.0) -> None:
    """The place of `target` (of every remote target when None) is there and held by us."""
    address = environ.get("LG_COORDINATOR", DEFAULT_COORDINATOR)
    me = f"{environ.get('LG_HOSTNAME') or socket.gethostname()}/" \
         f"{environ.get('LG_USERNAME') or getpass.getuser()}"
    wanted = {name: place for name, place in remote_places(env_path).items()
              if target is None or name == target}
    if not wanted:
        return
    try:
        with Coordinator(address, purpose="place-check", connect_timeout=connect_timeout) as c:
            places = {p.name: p for p in c.places()}
    except CoordinatorUnreachable:
        raise ConfigError(f"no labgrid coordinator answers at {address}: start the lab "
                          "(`hil lab up` for the virtual one) or set LG_COORDINATOR") from None
    for place in wanted.values():
        found = problem(place, places.get(place), address, me)
        if found:
            raise ConfigError(found)
