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


def test_a_pinned_client_runs_on_its_cpu_and_each_server_port_has_its_own_pidfile():
    cmd = sockperf.client_command("169.254.77.1", 3, port=11112, cpu=1)
    assert cmd.startswith("taskset -c 1 sockperf ping-pong") and "-p 11112" in cmd
    assert sockperf.pidfile(11112) in sockperf.server_command("169.254.77.1", 11112)
    assert sockperf.pidfile(11112) in sockperf.stop_server_command(11112)
    assert sockperf.pidfile(11111) != sockperf.pidfile(11112)


def test_flows_run_at_once_add_their_rates():
    a = sockperf.PingPong(2.0, 100, 100, 1.0, {})
    b = sockperf.PingPong(1.0, 30, 30, 1.0, {})
    assert sockperf.transactions_per_s([a, b]) == 80.0
