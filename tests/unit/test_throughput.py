import pytest

from hil.measure import interrupts, kvm_trace, throughput, virtio


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
    assert set(throughput.WIRINGS) - set(throughput.CONFIGS) == {"vhost-net-irqfd-shared"}


def test_irqfd_wirings_need_the_patched_vmm():
    stock = throughput.vmm_settings({"vmms": {"stock": "/usr/bin/qemu"}}, throughput.WIRINGS)
    assert list(stock) == ["virtio-net", "vhost-net", "virtio-net-pci-msi"]
    both = throughput.vmm_settings({"vmms": {"patched": "/opt/q"}}, throughput.WIRINGS)
    assert both["vhost-net-irqfd"]["irq_lines"] == 3
    assert both["vhost-net-irqfd-shared"] == {"vhost": True, "irq_lines": 2, "qemu": "/opt/q"}
    assert "vhost-net-irqfd-shared" not in throughput.vmm_settings({"vmms": {"patched": "/q"}})
    # A line for each queue of 4 pairs, and the config line.
    four = throughput.vmm_settings({"vmms": {"patched": "/opt/q"}}, throughput.WIRINGS, pairs=4)
    assert four["vhost-net-irqfd"]["irq_lines"] == 9
    assert four["vhost-net-irqfd-shared"]["irq_lines"] == 2


def test_a_gicv3_board_has_no_msi_wiring():
    # Its guest has no ITS (hil/labgrid/vmm.py), so virtio-net-pci would fall back to INTx.
    v3 = throughput.vmm_settings({"gic_version": 3, "vmms": {"patched": "/q"}}, throughput.WIRINGS)
    assert list(v3) == ["virtio-net", "vhost-net", "vhost-net-irqfd", "vhost-net-irqfd-shared"]


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
        "threshold 'vhost-net_max_gbps': unknown key; write `<config>_min_gbps`, "
        "`<config>_over_<config>`, `<config>_min_tps`, `<config>_tps_over_<config>` or "
        "`<config>_max_<counter>` (exits_per_interrupt, injections_per_interrupt, "
        "vmm_us_per_transaction)"]


def test_threshold_keys_name_a_metric_and_its_configurations():
    t = throughput.parse_key
    assert t("vhost-net-irqfd_over_vhost-net") == throughput.Threshold("throughput", (
        "vhost-net-irqfd", "vhost-net"))
    assert t("vhost-net-irqfd_tps_over_virtio-net-pci-msi") == throughput.Threshold(
        "transactions", ("vhost-net-irqfd", "virtio-net-pci-msi"))
    assert t("vhost-net_min_tps") == throughput.Threshold("transactions", ("vhost-net",))
    assert t("vhost-net-irqfd_max_exits_per_interrupt") == throughput.Threshold(
        "exits_per_interrupt", ("vhost-net-irqfd",))
    assert t("vhost-net_max_exits") is None
    assert throughput.threshold_problems({"vhost-net-irqfd-shared_tps_over_vhost-net": 1.05,
                                          "vhost-net_max_injections_per_interrupt": 1.1}) == []


def test_a_case_checks_only_the_thresholds_of_what_it_measures():
    declared = {"vhost-net_over_virtio-net": 1.0, "vhost-net_tps_over_virtio-net": 1.0,
                "vhost-net_max_vmm_us_per_transaction": 50}
    assert throughput.of_metrics(declared, ["throughput"]) == {"vhost-net_over_virtio-net": 1.0}


def test_transaction_ratios_and_cost_counters_gate_the_wiring_benchmark():
    s = throughput.summarize({"vhost-net": [2e9], "virtio-net": [1e9]})
    tps = throughput.summarize({"vhost-net-irqfd": [9600, 9700, 9650], "vhost-net": [7000]})
    exits = throughput.summarize({"vhost-net-irqfd": [4.0, 4.2, 4.1]})
    others = {"transactions": tps, "exits_per_interrupt": exits}
    ok = throughput.check_thresholds(s, {"vhost-net-irqfd_tps_over_vhost-net": 1.3,
                                         "vhost-net-irqfd_max_exits_per_interrupt": 4.5,
                                         "vhost-net_min_tps": 6000}, others)
    assert ok.verdict == "met"
    bad = throughput.check_thresholds(s, {"vhost-net-irqfd_tps_over_vhost-net": 1.4,
                                          "vhost-net-irqfd_max_exits_per_interrupt": 4.0,
                                          "vhost-net_min_tps": 8000,
                                          "vhost-net_max_vmm_us_per_transaction": 9}, others)
    assert bad.violations == (
        "vhost-net-irqfd/vhost-net transactions: 1.38 < 1.4",
        "vhost-net-irqfd: exits_per_interrupt 4.1 > 4.0",
        "vhost-net: 7000 transactions/s < 8000",
        "vhost-net_max_vmm_us_per_transaction: vmm_us_per_transaction not measured, so the "
        "threshold cannot be met",
    )


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



# Recorded on the virtual lab: a one-CPU guest's /proc/interrupts before and after an iperf3
# run of each wiring, and the board's kvm_irq_line histogram of the irqfd run.
IRQFD_RUN = "hist-kvm_irq_line-per-vq.txt"
SINGLE_RUN = "hist-kvm_irq_line.txt"


def recorded(data, wiring: str, irq_mode: str | None, hist: str, idle: bool = False
             ) -> throughput.Wiring:
    """`idle`: the "before" snapshot twice, a run in which no interrupt arrived."""
    before = interrupts.parse((data / f"guest-interrupts-{wiring}-before.txt").read_text())
    after = before if idle else interrupts.parse(
        (data / f"guest-interrupts-{wiring}-after.txt").read_text())
    net = virtio.VirtioDevice("virtio0", "net", irq_mode)
    return throughput.observe(net, before, after,
                              kvm_trace.Counters(kvm_trace.parse_hist(hist), {}, {}))


def test_irqfd_configuration_runs_per_vq_with_no_injection_from_the_vmm(data):
    w = recorded(data, "per-vq", "per-vq", (data / IRQFD_RUN).read_text())
    assert w.interrupts == {"config": 0, "input.0": 1096, "output.0": 1237}
    assert w.injections == {"config": 0, "input.0": 0, "output.0": 0}
    assert throughput.wiring_problems("vhost-net-irqfd", w) == []


def test_irqfd_configuration_fails_when_the_vmm_injects_its_queue_interrupts(data):
    w = recorded(data, "per-vq", "per-vq",
                 "{ irq_num:        270, level:          1 } hitcount:       1096\n"
                 "{ irq_num:        270, level:          0 } hitcount:       1096\n")
    assert throughput.wiring_problems("vhost-net-irqfd", w) == [
        "vhost-net-irqfd: the VMM injected 1096 queue interrupts; irqfd should have raised them all"]


def test_irqfd_configuration_fails_in_any_other_mode_or_without_queue_interrupts(data):
    shared = recorded(data, "single", "shared", (data / SINGLE_RUN).read_text())
    assert throughput.wiring_problems("vhost-net-irqfd", shared) == [
        "vhost-net-irqfd: irq_mode is shared, not per-vq"]
    idle = recorded(data, "per-vq", "per-vq", "", idle=True)
    assert throughput.wiring_problems("vhost-net-irqfd", idle) == [
        "vhost-net-irqfd: no interrupt on input.0 or output.0"]


def test_pci_configuration_shows_its_queues_on_msix(data):
    w = recorded(data, "msix", None, (data / IRQFD_RUN).read_text())
    assert w.controllers["input.0"] == "GICv2m-PCI-MSIX-0000:00:01.0"
    assert w.interrupts == {"config": 0, "input.0": 1129, "output.0": 1463}
    assert w.injections == {}  # MSI vectors are no GIC INTIDs
    assert throughput.wiring_problems("virtio-net-pci-msi", w) == []


def test_pci_configuration_fails_when_its_queues_are_not_on_msix(data):
    on_gic = recorded(data, "per-vq", None, "")
    assert throughput.wiring_problems("virtio-net-pci-msi", on_gic) == [
        "virtio-net-pci-msi: input.0 is on GIC-0, not MSI-X",
        "virtio-net-pci-msi: output.0 is on GIC-0, not MSI-X"]
    single = recorded(data, "single", "single", "")
    assert throughput.wiring_problems("virtio-net-pci-msi", single) == [
        "virtio-net-pci-msi: no interrupt line for input.0, output.0 (lines: [''])"]


def test_single_line_configurations_run_in_single_mode(data):
    for config in ("virtio-net", "vhost-net"):
        single = recorded(data, "single", "single", (data / SINGLE_RUN).read_text())
        assert single.interrupts == {"": 1239}
        assert throughput.wiring_problems(config, single) == []
        per_vq = recorded(data, "per-vq", "per-vq", "")
        assert throughput.wiring_problems(config, per_vq) == [
            f"{config}: irq_mode is per-vq, not single"]
        idle = recorded(data, "single", "single", "", idle=True)
        assert throughput.wiring_problems(config, idle) == [f"{config}: no interrupt on its line"]


def test_shared_mode_raises_one_line_for_every_queue_by_irqfd(data):
    before = interrupts.parse((data / "guest-interrupts-shared-before.txt").read_text())
    after = interrupts.parse((data / "guest-interrupts-shared-after.txt").read_text())
    net = virtio.VirtioDevice("virtio0", "net", "shared")
    counters = kvm_trace.Counters(
        kvm_trace.parse_hist((data / "hist-kvm_irq_line-shared.txt").read_text()),
        kvm_trace.parse_hist((data / "hist-vgic_update_irq_pending-shared.txt").read_text()), {})
    w = throughput.observe(net, before, after, counters)
    assert w.interrupts == {"config": 0, "queues": 2415}
    assert w.injections == {"config": 0, "queues": 0}
    assert counters.kernel_injections([239]) == 2512
    assert throughput.wiring_problems("vhost-net-irqfd-shared", w) == []
    injected = throughput.Wiring("shared", w.controllers, w.interrupts, {"queues": 2415})
    assert throughput.wiring_problems("vhost-net-irqfd-shared", injected) == [
        "vhost-net-irqfd-shared: the VMM injected 2415 queue interrupts; irqfd should have "
        "raised them all"]


def test_a_device_with_several_queues_must_show_a_line_for_each_in_per_vq_mode():
    queues = virtio.blk_vq_names(2)
    good = throughput.Wiring("per-vq", {"config": "GIC", "req.0": "GIC", "req.1": "GIC"},
                             {"config": 0, "req.0": 5, "req.1": 7}, {})
    assert throughput.wiring_problems("vhost-net-irqfd", good, queues) == []
    one_short = throughput.Wiring("per-vq", {"config": "GIC", "req.0": "GIC"},
                                  {"config": 0, "req.0": 5}, {})
    assert throughput.wiring_problems("vhost-net-irqfd", one_short, queues) == [
        "vhost-net-irqfd: lines ['config', 'req.0'], not ['config', 'req.0', 'req.1']"]
    assert throughput.queue_lines("shared", queues) == ("queues",)
    assert throughput.queue_lines("msi-x", queues) == ("req.0", "req.1")
