"""Run on a place of the virtual lab by test_virtual_lab.py (not collected on its own): what a
board shell reaches through the board's own NIC (QEMU's user network, 10.0.2.15 behind
10.0.2.2). HIL_PROBE_PORT: a port that listens in the boards' network namespace, which the
board must reach as 10.0.2.2; HIL_PROBE_FILE: a file of the lab's TFTP directory."""

import os

import pytest

pytestmark = pytest.mark.board

LAB_TFTP = "10.231.69.1"  # hil.virtual_lab.boardnet.HOST_ADDRESS: the one host service on purpose


def reaches(board, host: str, port: int) -> bool:
    text = board.check(f"nc -w 3 {host} {port} </dev/null && echo REACHED || echo REFUSED",
                       timeout=30)
    assert "REACHED" in text or "REFUSED" in text, text
    return "REACHED" in text


@pytest.fixture
def on_the_network(board):
    board.check("ip addr show eth0 | grep -q 10.0.2.15 || { ip link set eth0 up && "
                "ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; }")
    # busybox's nc and tftp are there: a refusal below is the network's, not a missing tool.
    board.check("busybox nc --help 2>&1 | grep -qi usage && busybox tftp --help 2>&1 | "
                "grep -qi usage")
    return board


def test_the_board_reaches_what_its_network_offers(on_the_network):
    assert reaches(on_the_network, "10.0.2.2", int(os.environ["HIL_PROBE_PORT"]))
    on_the_network.check(f"tftp -g -r {os.environ['HIL_PROBE_FILE']} -l /tmp/probe {LAB_TFTP} "
                         "&& grep -q hil-probe /tmp/probe")


def test_the_board_cannot_reach_the_coordinator_by_any_address(on_the_network):
    host, port = os.environ["LG_COORDINATOR"].rsplit(":", 1)
    # 10.0.2.2 is what QEMU's user network makes of the host's loopback.
    for address in {"10.0.2.2", host, LAB_TFTP, os.environ["HIL_HOST_PRIMARY"]}:
        assert not reaches(on_the_network, address, int(port)), address
