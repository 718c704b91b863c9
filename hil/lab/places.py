"""Is the labgrid place an environment names there, and ours? Asked of the coordinator before
anything is powered, so that a wrong LG_PLACE or a place someone else holds gets one message
instead of an error in every case."""

from __future__ import annotations

import getpass
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from labgrid.config import Config
from labgrid.exceptions import InvalidConfigError

from hil.errors import ConfigError

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default


def remote_places(env_path: Path) -> dict[str, str]:
    """target -> place name, for the targets that are RemotePlaces."""
    try:
        targets = Config(str(env_path)).get_targets()
    except InvalidConfigError as e:
        if "LG_PLACE" in str(e):
            raise ConfigError(f"{env_path} reaches a place named by LG_PLACE, which is not set: "
                              "export LG_PLACE=<place> (`hil lab env` prints one, "
                              "`labgrid-client places` lists them)") from None
        raise ConfigError(f"{env_path}: {e}") from None
    return {name: str(t["resources"]["RemotePlace"]["name"])
            for name, t in targets.items()
            if isinstance(t.get("resources"), Mapping) and "RemotePlace" in t["resources"]}


def problem(place: str, shown: subprocess.CompletedProcess[str], coordinator: str,
            me: str) -> str | None:
    """What keeps this client from using `place`, from `labgrid-client -p PLACE show`."""
    if shown.returncode != 0:
        err = shown.stderr + shown.stdout
        if "matches nothing" in err:
            return (f"place '{place}' is not on the coordinator at {coordinator}: "
                    f"`labgrid-client -x {coordinator} places` lists its places")
        if "connect to coordinator" in err or "unavailable" in err:
            return (f"no labgrid coordinator answers at {coordinator}: start the lab "
                    "(`hil lab up` for the virtual one) or set LG_COORDINATOR")
        return f"labgrid-client cannot show place '{place}': {err.strip()[-300:]}"
    m = re.search(r"^\s*acquired: (\S+)", shown.stdout, re.MULTILINE)
    holder = m.group(1) if m else "None"
    if holder == "None":
        return (f"place '{place}' is not acquired: `labgrid-client -p {place} acquire` first, "
                "and release it after the run")
    if holder != me:
        return f"place '{place}' is held by {holder}, not by this client ({me})"
    return None


def check(env_path: Path, environ: Mapping[str, str] = os.environ) -> None:
    coordinator = environ.get("LG_COORDINATOR", DEFAULT_COORDINATOR)
    me = f"{environ.get('LG_HOSTNAME') or socket.gethostname()}/" \
         f"{environ.get('LG_USERNAME') or getpass.getuser()}"
    client = str(Path(sys.executable).parent / "labgrid-client")
    for place in remote_places(env_path).values():
        shown = subprocess.run([client, "-x", coordinator, "-p", place, "show"],
                               capture_output=True, text=True, timeout=60)
        found = problem(place, shown, coordinator, me)
        if found:
            raise ConfigError(found)
