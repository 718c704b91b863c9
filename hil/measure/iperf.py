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


PORT = 5201  # iperf3's default


def client_command(server: str, seconds: int = 5, parallel: int = 1, reverse: bool = False,
                   port: int = PORT, cpu: int | None = None) -> str:
    """`cpu` pins the client (iperf3 3.12 sends every stream from one thread)."""
    return (f"iperf3 -c {server} -t {seconds} -P {parallel} -J"
            + (" -R" if reverse else "")
            + (f" -p {port}" if port != PORT else "")
            + (f" -A {cpu}" if cpu is not None else ""))


def server_command(port: int = PORT) -> str:
    """One-shot daemon: serves a single test, then exits."""
    return "iperf3 -s -D -1" + (f" -p {port}" if port != PORT else "")


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


def combine(results: list[IperfResult]) -> IperfResult:
    """Clients that ran at the same time, as one result."""
    retransmits = [r.retransmits for r in results]
    return IperfResult(
        sent_bps=sum(r.sent_bps for r in results),
        received_bps=sum(r.received_bps for r in results),
        seconds=max(r.seconds for r in results),
        retransmits=None if None in retransmits else sum(x or 0 for x in retransmits),
        streams=sum(r.streams for r in results),
    )
