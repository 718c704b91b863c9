import pytest

from hil import interrupts, kvm_trace, throughput, virtio


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


# /proc/interrupts of a one-CPU guest before and after an iperf3 run, in each wiring.
PER_VQ = """\
           CPU0
 11:  {timer} GIC-0  27 Level     arch_timer
 17:        1 GIC-0  79 Edge      virtio0-config
 18:    {rx} GIC-0 212 Edge      virtio0-input.0
 19:    {tx} GIC-0 213 Edge      virtio0-output.0
"""
MSIX = """\
           CPU0
 11:  {timer} GIC-0  27 Level     arch_timer
 18:        0 GICv2m-PCI-MSIX-0000:00:01.0   0 Edge      virtio0-config
 19:    {rx} GICv2m-PCI-MSIX-0000:00:01.0   1 Edge      virtio0-input.0
 20:    {tx} GICv2m-PCI-MSIX-0000:00:01.0   2 Edge      virtio0-output.0
"""
SINGLE = """\
           CPU0
 11:  {timer} GIC-0  27 Level     arch_timer
 17:    {rx} GIC-0  79 Edge      virtio0
"""


def run_of(text: str, rx: int, tx: int, irq_line_hist: str = "") -> tuple:
    before = interrupts.parse(text.format(timer=800, rx=10, tx=5))
    after = interrupts.parse(text.format(timer=900, rx=10 + rx, tx=5 + tx))
    counters = kvm_trace.Counters(kvm_trace.parse_hist(irq_line_hist), {}, {})
    return before, after, counters


def wiring(text: str, irq_mode: str | None, rx: int, tx: int = 0,
           irq_line_hist: str = "") -> throughput.Wiring:
    net = virtio.VirtioDevice("virtio0", "net", irq_mode)
    return throughput.observe(net, *run_of(text, rx, tx, irq_line_hist))


def test_irqfd_configuration_runs_per_vq_with_no_injection_from_the_vmm():
    w = wiring(PER_VQ, "per-vq", 1200, 300,
               "{ irq_num:         33, level:          1 } hitcount:         97\n")
    assert w.interrupts == {"config": 0, "input.0": 1200, "output.0": 300}
    assert w.injections == {"config": 0, "input.0": 0, "output.0": 0}
    assert throughput.wiring_problems("vhost-net-irqfd", w) == []


def test_irqfd_configuration_fails_when_the_vmm_injects_its_queue_interrupts():
    w = wiring(PER_VQ, "per-vq", 1200, 300,
               "{ irq_num:        212, level:          1 } hitcount:       1200\n"
               "{ irq_num:        212, level:          0 } hitcount:       1200\n")
    assert throughput.wiring_problems("vhost-net-irqfd", w) == [
        "vhost-net-irqfd: the VMM injected 1200 queue interrupts; irqfd should have raised them all"]


def test_irqfd_configuration_fails_in_any_other_mode_or_without_queue_interrupts():
    shared = wiring(SINGLE, "shared", 1200)
    assert throughput.wiring_problems("vhost-net-irqfd", shared) == [
        "vhost-net-irqfd: irq_mode is shared, not per-vq"]
    idle = wiring(PER_VQ, "per-vq", 0, 0)
    assert throughput.wiring_problems("vhost-net-irqfd", idle) == [
        "vhost-net-irqfd: no interrupt on input.0 or output.0"]


def test_pci_configuration_shows_its_queues_on_msix():
    w = wiring(MSIX, None, 1500, 300)
    assert w.controllers["input.0"] == "GICv2m-PCI-MSIX-0000:00:01.0"
    assert w.injections == {}  # MSI vectors are no GIC INTIDs
    assert throughput.wiring_problems("virtio-net-pci-msi", w) == []


def test_pci_configuration_fails_when_its_queues_are_not_on_msix():
    on_gic = wiring(PER_VQ, None, 1500, 300)
    assert throughput.wiring_problems("virtio-net-pci-msi", on_gic) == [
        "virtio-net-pci-msi: input.0 is on GIC-0, not MSI-X",
        "virtio-net-pci-msi: output.0 is on GIC-0, not MSI-X"]
    single = wiring(SINGLE, "single", 1500)
    assert throughput.wiring_problems("virtio-net-pci-msi", single) == [
        "virtio-net-pci-msi: no interrupt line for input.0, output.0 (lines: [''])"]


def test_single_line_configurations_run_in_single_mode():
    for config in ("virtio-net", "vhost-net"):
        assert throughput.wiring_problems(config, wiring(SINGLE, "single", 900)) == []
        assert throughput.wiring_problems(config, wiring(PER_VQ, "per-vq", 900)) == [
            f"{config}: irq_mode is per-vq, not single"]
        assert throughput.wiring_problems(config, wiring(SINGLE, "single", 0)) == [
            f"{config}: no interrupt on its line"]
