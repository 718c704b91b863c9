"""The kernel's own packet counts, for a flood of datagrams: where each packet ended.

Under a flood the receiving programs read only part of what arrives, and their own counts
are not the kernel's (iperf3 3.12's receiver counted twice the datagrams that the guest's
UDP delivered to it). So a run reads, before and after, the sender's UDP OutDatagrams, the
packets each guest CPU's stack took in from its queues (/proc/net/softnet_stat) and the
datagrams UDP delivered to sockets or dropped for a full socket buffer (/proc/net/snmp).
"""

from __future__ import annotations

from dataclasses import dataclass

SOFTNET = "cat /proc/net/softnet_stat"
UDP = "grep ^Udp: /proc/net/snmp"


def parse_softnet(text: str) -> dict[int, int]:
    """CPU -> packets processed so far (the first column; the CPU is the 13th, where the
    kernel prints it, else the row's place)."""
    out: dict[int, int] = {}
    for i, line in enumerate(ln for ln in text.splitlines() if ln.strip()):
        cols = line.split()
        cpu = int(cols[12], 16) if len(cols) > 12 else i
        out[cpu] = int(cols[0], 16)
    return out


def softnet_delta(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    # The counter is 32 bits wide in the kernel: a wrap between two readings is modular.
    return {cpu: (n - before.get(cpu, 0)) % (1 << 32) for cpu, n in after.items()}


def parse_udp(text: str) -> dict[str, int]:
    """The Udp: counters by name (a header line, then a line of values)."""
    rows = [ln.split()[1:] for ln in text.splitlines() if ln.startswith("Udp:")]
    if len(rows) < 2:
        raise ValueError(f"no Udp: counters in {text[:200]!r}")
    names, values = rows[0], rows[1]
    return dict(zip(names, (int(v) for v in values), strict=True))


@dataclass(frozen=True)
class Flood:
    """Where the datagrams of one run went."""

    sent: int  # the board's UDP OutDatagrams
    stack: dict[int, int]  # guest CPU -> packets its stack took in from its queue
    delivered: int  # the guest's UDP InDatagrams: read by, or queued for, the receivers
    socket_full: int  # the guest's UDP RcvbufErrors: taken in, dropped at a full socket
    seconds: float

    @property
    def delivered_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def stack_per_s(self) -> float:
        return sum(self.stack.values()) / self.seconds if self.seconds else 0.0

    @property
    def loss(self) -> float:
        """Of what the board sent, the share that no receiver got."""
        return 1 - self.delivered / self.sent if self.sent else 0.0


def flood(board_udp: tuple[dict[str, int], dict[str, int]],
          guest_udp: tuple[dict[str, int], dict[str, int]],
          softnet: tuple[dict[int, int], dict[int, int]], seconds: float) -> Flood:
    """From (before, after) readings of each."""
    def grown(pair: tuple[dict[str, int], dict[str, int]], name: str) -> int:
        return pair[1].get(name, 0) - pair[0].get(name, 0)

    return Flood(sent=grown(board_udp, "OutDatagrams"), stack=softnet_delta(*softnet),
                 delivered=grown(guest_udp, "InDatagrams"),
                 socket_full=grown(guest_udp, "RcvbufErrors"), seconds=seconds)
