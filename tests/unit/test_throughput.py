import pytest

from hil import throughput


def test_interleaved_runs_and_side_by_side_ratios():
    assert throughput.interleave(["a", "b"], 2) == ["a", "b", "a", "b"]
    s = throughput.summarize({"virtio-net": [1.0, 3.0, 2.0], "vhost-net": [4.0, 5.0, 6.0], "x": []})
    assert s["virtio-net"].median == 2.0 and s["vhost-net"].spread == pytest.approx(0.4)
    assert "x" not in s
    assert throughput.ratios(s, "virtio-net") == {"virtio-net": 1.0, "vhost-net": 2.5}


def test_the_testcase_compares_every_way_of_wiring_virtio_nets_interrupts():
    assert set(throughput.CONFIGS) == {"virtio-net", "vhost-net", "virtio-net-pci-msi",
                                       "vhost-net-irqfd"}
    assert throughput.BASELINE in throughput.CONFIGS


def test_thresholds_a_board_declares_gate_the_run():
    s = throughput.summarize({"vhost-net": [2e9], "virtio-net": [1e9]})
    met = throughput.check_thresholds(s, {"vhost-net_over_virtio-net": 2.0})
    assert met.gated and met.violations == () and met.verdict == "met"
    assert throughput.check_thresholds(s, {"vhost-net_over_virtio-net": 2.5}).violations == \
        ("vhost-net/virtio-net: 2.00 < 2.5",)
    low = throughput.check_thresholds(s, {"virtio-net_min_gbps": 1.5})
    assert low.violations == ("virtio-net: 1.000 Gbit/s < 1.5",) and low.verdict == "violated"


def test_a_board_without_thresholds_is_measured_not_gated():
    s = throughput.summarize({"vhost-net": [2e9], "virtio-net": [1e9]})
    result = throughput.check_thresholds(s, {})
    assert not result.gated and result.violations == ()
    assert result.verdict == "not gated"


def test_a_threshold_that_cannot_be_evaluated_fails_the_gate():
    s = throughput.summarize({"vhost-net": [2e9], "virtio-net": [0.0]})
    result = throughput.check_thresholds(s, {"vhost-net-irqfd_over_vhost-net": 1.2,
                                             "vhost-net_over_virtio-net": 1.0,
                                             "vhost-net_max_gbps": 9.0})
    assert result.violations == (
        "vhost-net-irqfd_over_vhost-net: vhost-net-irqfd not measured, so the threshold "
        "cannot be met",
        "vhost-net/virtio-net: virtio-net moved nothing, so the ratio is undefined",
        "vhost-net_max_gbps: not a threshold key",
    )


def test_well_formed_thresholds_have_no_problems():
    assert throughput.threshold_problems(None) == []
    assert throughput.threshold_problems({}) == []
    assert throughput.threshold_problems({"vhost-net-irqfd_over_vhost-net": 1.2,
                                          "virtio-net_min_gbps": 1}) == []


def test_threshold_keys_must_have_a_known_form():
    assert throughput.threshold_problems({"vhost-net_max_gbps": 9.0}) == [
        "threshold 'vhost-net_max_gbps': unknown key; write `<config>_min_gbps` or "
        "`<config>_over_<config>`"]


def test_threshold_keys_must_name_configurations_the_testcase_runs():
    assert throughput.threshold_problems({"vhost_over_virtio-net": 1.5,
                                          "vhost-net-irqfd_over_virtio-pci_min_gbps": 1.0},
                                         ["virtio-net", "vhost-net-irqfd"]) == [
        "threshold 'vhost_over_virtio-net': no configuration 'vhost'; "
        "choose one of virtio-net, vhost-net-irqfd",
        "threshold 'vhost-net-irqfd_over_virtio-pci_min_gbps': no configuration "
        "'vhost-net-irqfd_over_virtio-pci'; choose one of virtio-net, vhost-net-irqfd",
    ]


def test_threshold_limits_must_be_numbers():
    assert throughput.threshold_problems({"vhost-net_over_virtio-net": "1.5",
                                          "virtio-net_min_gbps": True}) == [
        "threshold 'vhost-net_over_virtio-net': limit '1.5' is not a number; "
        "write it unquoted, e.g. 1.5",
        "threshold 'virtio-net_min_gbps': limit True is not a number; write it unquoted, e.g. 1.5",
    ]


def test_thresholds_must_be_a_mapping():
    assert throughput.threshold_problems(["vhost-net_over_virtio-net"]) == [
        "thresholds must be a mapping of key to number, not list"]

