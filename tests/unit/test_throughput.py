import pytest

from hil import throughput


def test_interleaved_runs_and_side_by_side_ratios():
    assert throughput.interleave(["a", "b"], 2) == ["a", "b", "a", "b"]
    s = throughput.summarize({"virtio-net": [1.0, 3.0, 2.0], "vhost-net": [4.0, 5.0, 6.0], "x": []})
    assert s["virtio-net"].median == 2.0 and s["vhost-net"].spread == pytest.approx(0.4)
    assert "x" not in s
    assert throughput.ratios(s, "virtio-net") == {"virtio-net": 1.0, "vhost-net": 2.5}


def test_thresholds_a_board_declares():
    s = throughput.summarize({"vhost-net": [2e9], "virtio-net": [1e9]})
    assert throughput.check_thresholds(s, {}) == []
    assert throughput.check_thresholds(s, {"vhost-net_over_virtio-net": 2.0}) == []
    assert throughput.check_thresholds(s, {"vhost-net_over_virtio-net": 2.5}) == \
        ["vhost-net/virtio-net: 2.00 < 2.5"]
    assert throughput.check_thresholds(s, {"virtio-net_min_gbps": 1.5}) == \
        ["virtio-net: 1.000 Gbit/s < 1.5"]
