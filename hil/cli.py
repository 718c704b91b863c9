"""The `hil` command: firmware builds, qualification runs and benchmarks."""

from __future__ import annotations

import argparse
import sys
import time

from hil.errors import HilError


def _firmware_build(args: argparse.Namespace) -> int:
    from hil.build import images

    t0 = time.monotonic()
    out = images.build()
    print(f"firmware: {out} ({time.monotonic() - t0:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fw = sub.add_parser("firmware", help="build the board and guest images")
    fw_sub = fw.add_subparsers(dest="action", required=True)
    fw_sub.add_parser("build", help="build or fetch from the cache").set_defaults(func=_firmware_build)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except HilError as e:
        print(f"hil: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
