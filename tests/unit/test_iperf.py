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
