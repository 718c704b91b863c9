import pytest

from hil.measure import sockperf


def test_a_recorded_tcp_ping_pong_between_guest_and_board(data):
    r = sockperf.parse((data / "sockperf-pingpong-tcp.txt").read_text())
    assert (r.seconds, r.sent, r.received) == (2.997, 2081, 2081)
    assert r.transactions_per_s == pytest.approx(694.4, abs=0.1)
    assert r.latency_us == 717.644
    assert r.percentiles_us["50.000"] == 646.372 and r.percentiles_us["max"] == 12409.788
    assert r.percentiles_us["min"] == 480.762


def test_a_run_without_a_result_says_what_sockperf_printed_last():
    with pytest.raises(sockperf.SockperfError, match="Connection refused"):
        sockperf.parse("sockperf: == version #3.7-no.git ==\n"
                       "sockperf: ERROR: Connection refused (errno=111)\n")


def test_the_client_waits_for_each_reply_and_sends_at_once():
    cmd = sockperf.client_command("169.254.77.1", 3)
    assert cmd.startswith("sockperf ping-pong --tcp -i 169.254.77.1 -p 11111 -t 3")
    assert "--mps=max" in cmd
    assert sockperf.server_command("169.254.77.1").startswith("sockperf server --tcp")
