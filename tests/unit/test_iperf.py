import pytest

from hil.measure import iperf


def test_recorded_client_json_parses(data):
    r = iperf.parse((data / "iperf3-client.json").read_text())
    assert r.received_bps == pytest.approx(229909684.68557787)
    assert r.sent_bps > r.received_bps * 0.9
    assert r.seconds == pytest.approx(3.025932)
    assert r.retransmits == 0 and r.streams == 1


def test_error_json_is_an_error():
    with pytest.raises(iperf.IperfError, match="unable to connect"):
        iperf.parse('{"start": {}, "error": "unable to connect to server"}')


def test_no_json_is_an_error():
    with pytest.raises(iperf.IperfError):
        iperf.parse("iperf3: command not found")


def test_client_command():
    assert iperf.client_command("169.254.77.1", 3, 2, reverse=True) == \
        "iperf3 -c 169.254.77.1 -t 3 -P 2 -J -R"


def test_a_client_pinned_to_a_cpu_talks_to_its_own_server():
    assert iperf.client_command("169.254.77.1", 3, port=5202, cpu=1) == \
        "iperf3 -c 169.254.77.1 -t 3 -P 1 -J -p 5202 -A 1"
    assert iperf.server_command(5202) == "iperf3 -s -D -1 -p 5202"
    assert iperf.server_command() == "iperf3 -s -D -1"


def test_clients_that_ran_together_add_up():
    a = iperf.IperfResult(2e8, 1.9e8, 3.0, 1, 1)
    b = iperf.IperfResult(1e8, 0.9e8, 3.1, 0, 1)
    assert iperf.combine([a, b]) == iperf.IperfResult(3e8, 2.8e8, 3.1, 1, 2)
    assert iperf.combine([a, iperf.IperfResult(1e8, 1e8, 3.0, None, 1)]).retransmits is None


def test_a_udp_receivers_count_comes_from_its_own_sum(data):
    # iperf3 3.12 on the guest, -u -R -l 64 -b 0 for one second (intervals trimmed to one).
    r = iperf.parse_udp((data / "iperf3-udp-receiver.json").read_text())
    assert (r.packets, r.lost) == (28430, 0)
    assert r.received_per_s == pytest.approx(28430 / 1.025471)
    assert r.loss == 0


def test_a_udp_sender_side_result_is_refused():
    sent = '{"end": {"sum": {"packets": 10, "lost_packets": 0, "seconds": 1, "sender": true}}}'
    with pytest.raises(iperf.IperfError, match="run the client with -u -R"):
        iperf.parse_udp(sent)


def test_udp_receivers_at_once_add_up_and_lose_in_proportion():
    both = iperf.combine_udp([iperf.UdpResult(1000, 10, 1.0), iperf.UdpResult(3000, 30, 1.02)])
    assert (both.packets, both.lost, both.seconds) == (4000, 40, 1.02)
    assert both.loss == pytest.approx(0.01)
    assert iperf.udp_receiver_command("169.254.77.1", 1, port=5202, cpu=1) == \
        "iperf3 -c 169.254.77.1 -u -R -l 64 -b 0 -t 1 -J -p 5202 -A 1"
    # An offered rate instead of a flood: iperf3's -b counts the payload's bits.
    assert iperf.udp_receiver_command("169.254.77.1", 1, cpu=0, pps=10000) == \
        "iperf3 -c 169.254.77.1 -u -R -l 64 -b 5120000 -t 1 -J -A 0"
