"""sockperf ping-pong between guest and board: command lines and the result, parsed.

A request/response benchmark (netperf's TCP_RR; netperf is not in Debian main): one message
goes out, the client waits for the reply, and only then sends the next, so every transaction
takes the interrupts of both directions and the rate says what they cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PORT = 11111
MESSAGE_BYTES = 64


class SockperfError(ValueError):
    """sockperf printed no result."""


@dataclass(frozen=True)
class PingPong:
    seconds: float  # the measured part of the run (sockperf's [Valid Duration])
    sent: int
    received: int  # replies: one per transaction
    latency_us: float  # sockperf's average latency, half a round trip
    percentiles_us: dict[str, float]  # "50.000", "99.000", ..., "max", "min"

    @property
    def transactions_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0


def pidfile(port: int = PORT) -> str:
    return f"/run/hil-sockperf.{port}.pid"


def server_command(addr: str, port: int = PORT) -> str:
    """The board's side, in the background; the client's run ends on its own timer."""
    return (f"sockperf server --tcp -i {addr} -p {port} >/tmp/sockperf-server.{port}.log 2>&1 & "
            f"echo $! >{pidfile(port)}")


def stop_server_command(port: int = PORT) -> str:
    f = pidfile(port)
    return f"if [ -f {f} ]; then kill $(cat {f}) 2>/dev/null; rm -f {f}; fi"


def client_command(addr: str, seconds: int, port: int = PORT,
                   message_bytes: int = MESSAGE_BYTES, cpu: int | None = None) -> str:
    """`cpu` pins the client: its flow then leaves on that CPU's queue (XPS), and the board's
    multiqueue tap sends the replies back on the same queue pair."""
    # --mps=max: send the next request as soon as the reply is in, not at a fixed rate.
    return ((f"taskset -c {cpu} " if cpu is not None else "")
            + f"sockperf ping-pong --tcp -i {addr} -p {port} -t {seconds} -m {message_bytes} "
            "--mps=max")


_VALID = re.compile(r"\[Valid Duration\]\s+RunTime=(?P<s>[\d.]+) sec;\s+"
                    r"SentMessages=(?P<sent>\d+);\s+ReceivedMessages=(?P<rcvd>\d+)")
_AVG = re.compile(r"avg-latency=(?P<avg>[\d.]+)")
_PCT = re.compile(r"---> (?:percentile (?P<p>[\d.]+)|<(?P<mm>MAX|MIN)> observation)\s*=\s*"
                  r"(?P<v>[\d.]+)")


def transactions_per_s(flows: list[PingPong]) -> float:
    """Of flows run at once: each one's rate, summed."""
    return sum(f.transactions_per_s for f in flows)


def parse(text: str) -> PingPong:
    valid, avg = _VALID.search(text), _AVG.search(text)
    if valid is None or avg is None:
        tail = text.strip().splitlines()[-3:]
        raise SockperfError(f"sockperf printed no ping-pong result: {' / '.join(tail)!r}")
    pct = {(m["p"] or m["mm"].lower()): float(m["v"]) for m in _PCT.finditer(text)}
    return PingPong(float(valid["s"]), int(valid["sent"]), int(valid["rcvd"]),
                    float(avg["avg"]), pct)
