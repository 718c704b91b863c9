import pytest

from hil import iperf


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
