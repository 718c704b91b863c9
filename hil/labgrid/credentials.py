"""A power switch's login as the lab keeps it: `user:password` in a file of mode 600 outside the
repository, or LG_POWER_USER and LG_POWER_PASSWORD. Read by whoever talks to the switch: the
power driver of a board, the lab's power relay, and the virtual lab's switch itself."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)  # never in a repr, hence never in a log line


def parse_credentials(text: str) -> Credentials:
    """`user:password` on the first line (of a file, or an environment variable)."""
    line = text.splitlines()[0].strip() if text.strip() else ""
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise ValueError("credentials must be `user:password` on one line")
    return Credentials(user, password)


# labgrid's backend takes user and password from the host URL's userinfo without unquoting
# them, so anything URL syntax gives a meaning to cannot get through.
_URL_SAFE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=-]+")


def credentials_problem(creds: Credentials) -> str | None:
    for what, value in (("user", creds.user), ("password", creds.password)):
        if not _URL_SAFE.fullmatch(value):
            return (f"the {what} has characters a URL's user:password@ cannot carry verbatim "
                    "(labgrid does not unquote them); use letters, digits and . _ ~ - only")
    return None


def load_credentials(path: str | None, environ: Mapping[str, str]) -> Credentials:
    if path:
        p = Path(path).resolve()
        if p.is_relative_to(REPO):
            raise ValueError(f"{path}: credentials must live outside the repository")
        if p.stat().st_mode & 0o077:
            raise ValueError(f"{path}: readable by others; chmod 600 it")
        creds = parse_credentials(p.read_text())
    elif environ.get("LG_POWER_USER") and environ.get("LG_POWER_PASSWORD"):
        creds = Credentials(environ["LG_POWER_USER"], environ["LG_POWER_PASSWORD"])
    else:
        raise ValueError("no credentials: give --credentials FILE or set LG_POWER_USER and "
                         "LG_POWER_PASSWORD")
    problem = credentials_problem(creds)
    if problem:
        raise ValueError(problem)
    return creds
