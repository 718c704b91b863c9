"""labgrid's coordinator as hil asks it things: through `labgrid-client`, labgrid's own public
interface, with its text parsed by pure functions (tested on recorded output).

Why the command and not labgrid's Python client: `ClientSession` methods read their arguments
from an argparse namespace and print their results; the command is what lab engineers script
against, and what stays stable across labgrid releases.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hil.errors import InfrastructureError

CLIENT = str(Path(sys.executable).parent / "labgrid-client")


@dataclass(frozen=True)
class Place:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    acquired: str | None = None  # "host/user"
    resources: dict[str, bool] = field(default_factory=dict)  # path -> avail


@dataclass(frozen=True)
class Reservation:
    token: str
    owner: str
    state: str  # waiting, allocated, acquired, expired, invalid
    prio: float
    filters: str
    allocation: str | None
    created: str


def parse_place(text: str) -> Place:
    """`labgrid-client -p PLACE show` (the place and its matching resources)."""
    name = re.search(r"^Place '([^']+)':", text, re.MULTILINE)
    if name is None:
        raise ValueError("not a place: " + text[:200])

    def line(key: str) -> str | None:
        m = re.search(rf"^  {key}: ?(.*)$", text, re.MULTILINE)
        return m.group(1).strip() if m else None

    tags = {}
    for item in (line("tags") or "").split(", "):
        k, sep, v = item.partition("=")
        if sep:
            tags[k.strip()] = v.strip()
    acquired = line("acquired")
    resources = {m.group(1): m.group(2) == "True" for m in re.finditer(
        # "Matching" while the place is free, "Acquired" while someone holds it.
        r"^(?:Matching|Acquired) resource '[^']+' \(([^)]+)\):\n  \{'acquired': [^\n]*\n"
        r"   'avail': (True|False)",
        text, re.MULTILINE)}
    return Place(name.group(1), tags, line("comment") or "",
                 None if acquired in (None, "None") else acquired, resources)


def parse_reservations(text: str) -> list[Reservation]:
    """`labgrid-client reservations`."""
    out = []
    for block in re.split(r"^(?=Reservation ')", text, flags=re.MULTILINE):
        m = re.match(r"Reservation '([^']+)':", block)
        if not m:
            continue

        def get(key: str, block: str = block) -> str:
            k = re.search(rf"^  {key}: (.*)$", block, re.MULTILINE)
            return k.group(1).strip() if k else ""

        filters = re.search(r"^  filters:\n    main: (.*)$", block, re.MULTILINE)
        alloc = re.search(r"^  allocations:\n    main: (.*)$", block, re.MULTILINE)
        out.append(Reservation(m.group(1), get("owner"), get("state"),
                               float(get("prio") or 0), filters.group(1) if filters else "",
                               alloc.group(1).strip() if alloc else None, get("created")))
    return out


def parse_token(text: str) -> str:
    """`labgrid-client reserve --shell`."""
    m = re.search(r"export LG_TOKEN=(\S+)", text)
    if m is None:
        raise ValueError("no LG_TOKEN in: " + text[:200])
    return m.group(1)


def parse_place_names(text: str) -> list[str]:
    """`labgrid-client places`: one place per line, its comment after it."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


class CoordinatorError(InfrastructureError):
    """The coordinator refused or did not answer."""


class Coordinator:
    def __init__(self, address: str):
        self.address = address

    def run(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            q = subprocess.run([CLIENT, "-x", self.address, *args], capture_output=True,
                               text=True, timeout=timeout, env=dict(env) if env else None)
        except subprocess.TimeoutExpired as e:
            raise CoordinatorError(f"labgrid-client {' '.join(args)}: no answer from the "
                                   f"coordinator at {self.address} within {timeout:g} s") from e
        if check and q.returncode != 0:
            err = (q.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise CoordinatorError(f"labgrid-client {' '.join(args)} (coordinator "
                                   f"{self.address}): {err}")
        return q

    def place(self, name: str) -> Place:
        return parse_place(self.run("-p", name, "show").stdout)

    def places(self) -> list[Place]:
        return [self.place(n) for n in parse_place_names(self.run("places").stdout)]

    def reservations(self) -> list[Reservation]:
        return parse_reservations(self.run("reservations").stdout)

    def reserve(self, filters: Mapping[str, str], prio: float) -> str:
        return parse_token(self.run("reserve", "--shell", "--prio", str(prio),
                                    *(f"{k}={v}" for k, v in filters.items())).stdout)

    def cancel(self, token: str) -> None:
        self.run("cancel-reservation", token, check=False)

    def acquire(self, place: str) -> None:
        self.run("-p", place, "acquire")

    def release(self, place: str, kick: bool = False) -> None:
        self.run("-p", place, "release", *(["--kick"] if kick else []))

    def set_tags(self, place: str, tags: Mapping[str, str]) -> None:
        """Merges: an empty value removes the tag."""
        self.run("-p", place, "set-tags", *(f"{k}={v}" for k, v in tags.items()))

    def set_comment(self, place: str, comment: str) -> None:
        self.run("-p", place, "set-comment", comment)
