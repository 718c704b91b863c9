"""Traffic between the guest and the board over vhost-net."""

import pytest

from hil.labgrid import probes
from hil.measure import iperf

pytestmark = [pytest.mark.guest, pytest.mark.throughput]

BOARD_ADDR = probes.BOARD_ADDR


def test_guest_reaches_the_board(guest):
    probes.ping_board(guest)


def test_iperf3_between_guest_and_board_returns_parsed_json(guest, board, measurements):
    board.check(iperf.server_command())
    out = probes.iperf_client(guest, iperf.client_command(BOARD_ADDR, seconds=3), timeout=60)
    result = iperf.parse(out)
    measurements.record("iperf3.received_bps", result.received_bps, "bit/s",
                        backend="vhost-net", lines="single")
    measurements.record("iperf3.seconds", result.seconds, "s")
    assert result.seconds > 2
    assert result.received_bps > 0
