"""Reading a console during boot: is the system up, did it panic, or is it still going?"""

from __future__ import annotations

import re
from enum import Enum

from labgrid.util import Timeout

from hil.errors import BootTimeout, ProductFailure


class BootState(Enum):
    READY = "ready"
    PANIC = "panic"


# Console patterns, in the order labgrid's expect() is given them.
PATTERNS: dict[BootState, str] = {
    BootState.READY: r"hil: (board|guest) ready",
    BootState.PANIC: r"Kernel panic - not syncing[^\r\n]*|Internal error: Oops[^\r\n]*",
}


def classify(console_text: str) -> BootState | None:
    """The first boot outcome that appears in `console_text`, or None while still booting."""
    hits = [(m.start(), s) for s, p in PATTERNS.items() if (m := re.search(p, console_text))]
    return min(hits, key=lambda h: h[0])[1] if hits else None


class BootFailed(ProductFailure):
    """The board or guest kernel panicked while booting."""


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


# Whatever is there: what forget_history reads and drops.
ANYTHING = r"(?s).+"


def forget_history(console: object, limit_s: float = 0.5) -> None:
    """Drop what a console buffered and what waits unread on its port, so that an old boot's
    prompt or panic cannot match again: labgrid keeps one pexpect buffer per console for its
    whole life (across power cycles), and a USB serial adapter keeps what the board printed
    while no one read it. Bounded: a console that never stops talking is left after
    `limit_s`."""

    from pexpect import TIMEOUT

    # What was read already: labgrid offers no call that drops it.
    expect = getattr(console, "_expect", None)
    if expect is not None:
        expect.buffer = b""
    if getattr(console, "status", None) == 0:
        return  # labgrid's QEMUDriver while QEMU is off: it has no port to read yet
    deadline = Timeout(float(limit_s))
    try:
        while not deadline.expired:
            if console.expect([ANYTHING, TIMEOUT], timeout=0)[0] != 0:  # type: ignore[attr-defined]
                return
    except (TypeError, OSError):
        # No port yet (labgrid's QEMUDriver before on()): nothing can wait on it.
        return


def wait_for_boot(console: object, where: str, timeout: float, log_hint: str) -> float:
    """Wait on a labgrid console until `where` is ready; return the seconds it took.

    A panic fails at once with the console tail; silence until `timeout` is a BootTimeout.
    """
    import time

    from pexpect import TIMEOUT

    t0 = time.monotonic()
    patterns = [*PATTERNS.values(), TIMEOUT]
    index, before, match, _ = console.expect(patterns, timeout=timeout)  # type: ignore[attr-defined]
    text = before.decode(errors="replace") if isinstance(before, bytes) else str(before)
    if index == 0:
        return time.monotonic() - t0
    if index == 1:
        what = match.group(0).decode(errors="replace") if match else "panic"
        raise BootFailed(f"{where} panicked while booting: {what}\n{tail(text)}\n"
                         f"console log: {log_hint}")
    raise BootTimeout(
        f"{where} did not reach its prompt within {timeout:.0f} s; console log: {log_hint}\n"
        f"last console lines:\n{tail(text)}"
    )
