"""iperf3 between guest and board: command lines and the JSON result, parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class IperfResult:
    sent_bps: float
    received_bps: float
    seconds: float
    retransmits: int | None
    streams: int

    @property
    def gbytes_per_s(self) -> float:
        return self.received_bps / 8e9


class IperfError(ValueError):
    """iperf3 reported an error instead of a result."""


def client_command(server: str, seconds: int = 5, parallel: int = 1, reverse: bool = False) -> str:
    return (f"iperf3 -c {server} -t {seconds} -P {parallel} -J"
            + (" -R" if reverse else ""))


def server_command() -> str:
    """One-shot daemon: serves a single test, then exits."""
    return "iperf3 -s -D -1"


def parse(text: str) -> IperfResult:
    start = text.find("{")
    if start < 0:
        raise IperfError(f"iperf3 printed no JSON: {text[:200]!r}")
    data = json.loads(text[start:])
    if "error" in data:
        raise IperfError(f"iperf3: {data['error']}")
    end = data["end"]
    sent, received = end["sum_sent"], end["sum_received"]
    return IperfResult(
        sent_bps=float(sent["bits_per_second"]),
        received_bps=float(received["bits_per_second"]),
        seconds=float(received["seconds"]),
        retransmits=sent.get("retransmits"),
        streams=len(end.get("streams", [])),
    )
