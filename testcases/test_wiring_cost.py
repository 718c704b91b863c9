"""What an interrupt costs in each way of wiring virtio-net: throughput, request/response
transactions, exits and injections per interrupt, VMM CPU time per transaction.

A benchmark (marker `bench`, run by `hil bench --wiring`): every wiring the board has, in
interleaved iterations, each first proving it was wired as named. On a cost-model board
(options.icount) every figure counts instructions and is recorded as such (`clock`). The
board's thresholds on these figures decide pass or fail; without any, nothing is gated.
"""

from dataclasses import asdict

import pytest

from hil.labgrid import probes, vmm
from hil.measure import cost, costmodel, procstat, throughput, virtio

pytestmark = [pytest.mark.guest, pytest.mark.bench]


def test_cost_of_each_interrupt_wiring_side_by_side(board, boot_guest, board_options,
                                                    measurements):
    thresholds = board_options.get("thresholds") or {}
    iterations = int(board_options.get("bench_iterations",
                                       board_options.get("throughput_iterations", 3)))
    seconds = int(board_options.get("bench_seconds", board_options.get("throughput_seconds", 3)))
    clock = costmodel.clock(board_options)
    configs = throughput.vmm_settings(board_options, throughput.WIRINGS)
    figures: dict[str, dict[str, list[float]]] = {}

    def sample(metric: str, config: str, value: float | None) -> None:
        if value is not None:
            figures.setdefault(metric, {}).setdefault(config, []).append(value)

    for i, name in enumerate(throughput.interleave(list(configs), iterations)):
        it = {"config": name, "clock": clock, "iteration": i // len(configs)}
        guest = boot_guest(**configs[name])
        pin = board_options.get("pin_vmm")
        if pin:
            # Checked with the env file; each thread's allowed CPUs are recorded.
            placed = board.check(vmm.pin_script(pin["vcpus"], pin["others"]))
            measurements.record("bench.vmm_threads", placed.splitlines(), **it)
        (net,) = [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "net"]
        mode = throughput.WIRINGS[name]
        transports = [probes.virtio_transports(guest)[net.name]] if mode != "msi-x" else []

        bulk = probes.iperf_with_counters(board, guest, seconds=seconds)
        wiring = throughput.observe(net, bulk.irq_before, bulk.irq_after, bulk.counters)
        wrong = throughput.wiring_problems(name, wiring)
        assert not wrong, "; ".join(wrong)
        measurements.record("iperf3.received_bps", bulk.result.received_bps, "bit/s", **it)
        sample(throughput.THROUGHPUT, name, bulk.result.received_bps)

        rr = probes.ping_pong_with_counters(board, guest, seconds=seconds)
        rr_wiring = throughput.observe(net, rr.irq_before, rr.irq_after, rr.counters)
        wrong = throughput.wiring_problems(name, rr_wiring)
        assert not wrong, "request/response: " + "; ".join(wrong)
        c = cost.of_run(mode, rr_wiring, rr.counters, transports, rr.vmm_before, rr.vmm_after,
                        rr.result.received, procstat.USER_HZ)
        measurements.record("sockperf.transactions_per_s", rr.result.transactions_per_s,
                            "1/s", **it)
        measurements.record("sockperf.latency_us", rr.result.latency_us, "us", **it)
        sample(throughput.TRANSACTIONS, name, rr.result.transactions_per_s)
        measurements.record("cost.run", asdict(c), **it)
        for figure, value in c.figures().items():
            measurements.record(f"cost.{figure}", value, **it)
            sample(figure, name, value)

    summaries = {metric: throughput.summarize(by_config) for metric, by_config in figures.items()}
    for metric, by_config in summaries.items():
        for name, s in by_config.items():
            measurements.record(f"bench.{metric}.median", s.median, config=name, clock=clock,
                                runs=len(s.samples))
            measurements.record(f"bench.{metric}.spread", round(s.spread, 4), config=name,
                                clock=clock, runs=len(s.samples))
    # Ratios side by side, from this one run's interleaved iterations.
    for metric in (throughput.THROUGHPUT, throughput.TRANSACTIONS):
        if throughput.BASELINE in summaries.get(metric, {}):
            for name, r in throughput.ratios(summaries[metric], throughput.BASELINE).items():
                measurements.record(f"bench.{metric}.over_{throughput.BASELINE}", round(r, 4),
                                    config=name, clock=clock)
    assert summaries.get(throughput.TRANSACTIONS), "no transaction was measured"
    others = {m: s for m, s in summaries.items() if m != throughput.THROUGHPUT}
    gate = throughput.check_thresholds(summaries.get(throughput.THROUGHPUT, {}), thresholds,
                                       others)
    measurements.record("bench.gate", gate.verdict, clock=clock)
    assert not gate.violations, "; ".join(gate.violations)
