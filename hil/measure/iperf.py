"""iperf3 between guest and board: command lines and the JSON result, parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


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


def server_command(port: int = PORT, cpu: int | None = None) -> str:
    """One-shot daemon: serves a single test, then exits; `cpu` pins it."""
    return ("iperf3 -s -D -1" + (f" -p {port}" if port != PORT else "")
            + (f" -A {cpu}" if cpu is not None else ""))


def _end(text: str) -> dict[str, Any]:
    """The `end` section of iperf3's JSON (it may follow other output)."""
    start = text.find("{")
    if start < 0:
        raise IperfError(f"iperf3 printed no JSON: {text[:200]!r}")
    data = json.loads(text[start:])
    if "error" in data:
        raise IperfError(f"iperf3: {data['error']}")
    end: dict[str, Any] = data["end"]
    return end


def parse(text: str) -> IperfResult:
    end = _end(text)
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


@dataclass(frozen=True)
class UdpResult:
    """Datagrams one receiver counted: `packets` the sender sent (by their sequence numbers),
    `lost` those that never arrived."""

    packets: int
    lost: int
    seconds: float

    @property
    def received(self) -> int:
        return self.packets - self.lost

    @property
    def received_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def loss(self) -> float:
        return self.lost / self.packets if self.packets else 0.0


def udp_receiver_command(server: str, seconds: int, length: int = 64, port: int = PORT,
                         cpu: int | None = None, pps: int = 0) -> str:
    """The client receives (-R) `length`-byte datagrams, `pps` a second (iperf3's -b counts
    the payload's bits), or as fast as the server sends (0: -b 0). It sends first (iperf3's
    UDP handshake) from the CPU it is pinned to, so the board's multiqueue tap learns the
    flow on that CPU's queue and sends it back on the same one."""
    return (f"iperf3 -c {server} -u -R -l {length} -b {pps * length * 8} -t {seconds} -J"
            + (f" -p {port}" if port != PORT else "")
            + (f" -A {cpu}" if cpu is not None else ""))


def parse_udp(text: str) -> UdpResult:
    """The receiving side's count from the JSON of a UDP run's receiving client (-R).

    iperf3 3.12 puts it in `end.sum` (`sender: false`); its `sum_received` there counts only
    the datagrams of the last report interval, so it is not used."""
    end = _end(text)
    total = end.get("sum") or {}
    if "packets" not in total or total.get("sender") is not False:
        raise IperfError("iperf3 printed no receiver's UDP datagram count "
                         f"(end.sum: {total!r}): run the client with -u -R")
    return UdpResult(int(total["packets"]), int(total["lost_packets"]), float(total["seconds"]))


def combine_udp(results: list[UdpResult]) -> UdpResult:
    """Receivers that ran at the same time, as one."""
    return UdpResult(sum(r.packets for r in results), sum(r.lost for r in results),
                     max(r.seconds for r in results))
