"""ser2net bound to one address, for labgrid's exporter.

labgrid's exporter starts ser2net with an accepter on every interface (`tcp,PORT`) and has
no setting for the address, so a board's console (a root shell, or U-Boot) would be open,
with no login, to anyone who reaches the host. The virtual lab puts a `ser2net` first on the
exporter's PATH (the exporter looks it up there) that is this module: it rewrites the
accepter to `tcp,ADDRESS,PORT` and execs the real ser2net with everything else unchanged.

    python -I hil/virtual_lab/ser2net_bind.py ADDRESS REAL_SER2NET [ser2net's arguments]
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

# ser2net 4's accepter: `telnet(...),tcp,PORT`; with an address: `tcp,ADDRESS,PORT`.
_ACCEPTER = re.compile(r"(accepter:\s*\S*?\btcp),(\d+)\s*$")


def bind_accepter(arg: str, address: str) -> str:
    """`arg` with a port-only tcp accepter bound to `address`; any other argument as it is."""
    return _ACCEPTER.sub(lambda m: f"{m.group(1)},{address},{m.group(2)}", arg)


def command(address: str, real: str, argv: Sequence[str]) -> list[str]:
    return [real, *(bind_accepter(a, address) for a in argv)]


def install(bin_dir: Path, address: str, real: str) -> Path:
    """Write `bin_dir/ser2net`, the wrapper the exporter finds first on its PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "ser2net"
    # The file itself, not `-m hil.virtual_lab...`: importing hil (labgrid) costs a second of CPU.
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -I {Path(__file__).resolve()} "
                    f"{address} {real} \"$@\"\n")
    path.chmod(stat.S_IRWXU)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    address, real, rest = args[0], args[1], args[2:]
    cmd = command(address, real, rest)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
