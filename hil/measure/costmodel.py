"""The virtual board's cost-model mode: QEMU's instruction counting (`-icount`).

With `-icount shift=N` the board's clocks, and so its guest's, advance with the instructions
the board executes instead of with the host's time: a throughput or a transaction rate then
says how many instructions a byte or a transaction costs, which another job on the host cannot
move. Such figures are not wall-clock figures; every measurement says which clock it was
taken on (`clock`), and figures of different clocks are never compared.

A board declares the mode in its target's `options:` as `icount: "shift=0,sleep=off"` (QEMU's
own sub-options). Pure: the board driver adds what `qemu_args` returns.
"""

from __future__ import annotations

from typing import Any

WALL = "wall"
ICOUNT = "icount"
OPTION = "icount"
# QEMU 10.0's -icount sub-options that leave a run reproducible; `rr`/`rrfile` (record and
# replay) would write or replay a log instead of measuring.
_BOOLS = ("sleep", "align")
_MAX_SHIFT = 10


def parse(value: str) -> dict[str, str]:
    """`shift=0,sleep=off` -> {"shift": "0", "sleep": "off"} (unchecked)."""
    out = {}
    for part in value.split(","):
        key, _, val = part.partition("=")
        out[key.strip()] = val.strip()
    return out


def problems(value: Any) -> list[str]:
    """What is wrong with a declared `icount` option, each saying what to write instead.

    QEMU would refuse some of these only once the board is powered (align=on with sleep=off,
    shift=auto with either), others it would take silently (an unknown key is an error, but a
    shift of 30 runs the board at a crawl)."""
    if value is None:
        return []
    if not isinstance(value, str) or not value.strip():
        return [f"icount {value!r}: write QEMU's -icount sub-options as a string, "
                "e.g. \"shift=0,sleep=off\""]
    opts = parse(value)
    out = []
    unknown = [k for k in opts if k not in ("shift", *_BOOLS)]
    if unknown:
        out.append(f"icount {value!r}: unknown sub-option {', '.join(map(repr, unknown))}; "
                   "allowed: shift, sleep, align")
    shift = opts.get("shift")
    if shift is None:
        out.append(f"icount {value!r}: name the shift, e.g. shift=0 "
                   "(one instruction per nanosecond of the board's clock)")
    elif shift != "auto" and not (shift.isdigit() and int(shift) <= _MAX_SHIFT):
        out.append(f"icount {value!r}: shift must be 0..{_MAX_SHIFT} (or auto), not {shift!r}")
    for key in _BOOLS:
        if key in opts and opts[key] not in ("on", "off"):
            out.append(f"icount {value!r}: {key} must be on or off, not {opts[key]!r}")
    if opts.get("align") == "on" and opts.get("sleep") == "off":
        out.append(f"icount {value!r}: align=on needs sleep=on (QEMU refuses both)")
    if shift == "auto":
        out.append(f"icount {value!r}: shift=auto adapts to the host's speed, so figures "
                   "would depend on the host again; name a fixed shift")
    return out


def qemu_args(value: str | None) -> list[str]:
    return ["-icount", value] if value else []


def clock(options: dict[str, Any]) -> str:
    """The clock a board's figures are taken on: its instruction count or the wall."""
    return ICOUNT if options.get(OPTION) else WALL
