"""What an interrupt costs in each way of wiring virtio's queues, with one vCPU and with several:
request/response transactions, small datagrams and random reads; exits and injections per
interrupt, where each queue's interrupts land, VMM CPU time per transaction.

A benchmark (marker `bench`, run by `hil bench --wiring`): for each guest size the board
declares (`bench_vcpus`, default [1]: n vCPUs, n virtio-net queue pairs, a virtio-blk with n
queues), every wiring the board has (or those of `bench_wirings`), in interleaved
iterations, each first proving it was wired as named. On a cost-model board (options.icount)
every figure counts instructions and is recorded as such (`clock`). The board's thresholds on
these figures decide pass or fail (they are taken at one vCPU); without any, nothing is gated.
"""

from dataclasses import asdict
from typing import Any

import pytest

from hil.labgrid import probes, vmm
from hil.measure import cost, costmodel, interrupts, procstat, sockperf, throughput, virtio

pytestmark = [pytest.mark.guest, pytest.mark.bench]

DISK = "/tmp/hil-bench.img"  # on the board's tmpfs: reads cost the board no disk
DISK_MB = 64


def blk_device(config: dict[str, Any], queues: int, iothread: str = "") -> tuple[str, ...]:
    """The guest's virtio-blk, on the same transport as its virtio-net (PCI for MSI-X), its
    completions from an iothread (QEMU's dataplane: they reach KVM through irqfds where the
    transport has them); `iothread` adds the board's properties for it (`bench_iothread`)."""
    transport = "pci" if config.get("net_device", "").endswith("-pci") else "device"
    return ("-object", ",".join(["iothread,id=io0", *([iothread] if iothread else [])]),
            "-drive", f"file={DISK},if=none,id=d0,format=raw",
            "-device", f"virtio-blk-{transport},drive=d0,num-queues={queues},iothread=io0")


def test_cost_of_each_interrupt_wiring_side_by_side(board, boot_guest, board_options,
                                                    measurements):
    thresholds = board_options.get("thresholds") or {}
    iterations = int(board_options.get("bench_iterations",
                                       board_options.get("throughput_iterations", 3)))
    seconds = int(board_options.get("bench_seconds", board_options.get("throughput_seconds", 3)))
    clock = costmodel.clock(board_options)
    pin = board_options.get("pin_vmm")
    servers_cpu = pin["others"] if pin else None
    # vCPUs -> metric -> wiring -> per-iteration values
    figures: dict[int, dict[str, dict[str, list[float]]]] = {}

    board.check(f"dd if=/dev/zero of={DISK} bs=1M count={DISK_MB} 2>/dev/null")
    for n in board_options.get("bench_vcpus", [1]):
        # `bench_wirings`: only these of the wirings the board has (default: all of them).
        configs = throughput.vmm_settings(board_options, board_options.get(
            "bench_wirings", throughput.WIRINGS), pairs=n)

        def sample(metric: str, config: str, value: float | None, n: int = n) -> None:
            if value is not None:
                figures.setdefault(n, {}).setdefault(metric, {}).setdefault(config, []).append(
                    value)
        for i, name in enumerate(throughput.interleave(list(configs), iterations)):
            it = {"config": name, "clock": clock, "iteration": i // len(configs), "vcpus": n}
            guest = boot_guest(**configs[name], cpus=n, queues=n,
                               extra=blk_device(configs[name], n,
                                                board_options.get("bench_iothread", "")))
            if pin:
                # Checked with the env file; each thread's allowed CPUs are recorded.
                placed = board.check(vmm.pin_script(pin["vcpus"], pin["others"]))
                measurements.record("bench.vmm_threads", placed.splitlines(), **it)
            devices = virtio.parse_list(guest.check(virtio.LIST_COMMAND))
            (net,) = [d for d in devices if d.kind == "net"]
            (blk,) = [d for d in devices if d.kind == "blk"]
            mode = throughput.WIRINGS[name]
            transports = ([] if mode == "msi-x" else
                          [probes.virtio_transports(guest)[d.name] for d in (net, blk)])
            net_queues = virtio.net_vq_names(n)

            if n == 1:  # one bulk flow: the throughput of one queue pair, as first measured
                bulk = probes.iperf_with_counters(board, guest, seconds=seconds)
                wiring = throughput.observe(net, bulk.irq_before, bulk.irq_after, bulk.counters)
                wrong = throughput.wiring_problems(name, wiring)
                assert not wrong, "; ".join(wrong)
                measurements.record("iperf3.received_bps", bulk.result.received_bps, "bit/s",
                                    **it)
                sample(throughput.THROUGHPUT, name, bulk.result.received_bps)

            # Each flow on the queue pair of the CPU that runs it (request/response) or
            # receives it (UDP), where there is a line per queue to show it: input.k's
            # interrupts all on CPU k.
            spread = {f"input.{k}": frozenset({k}) for k in range(n)}
            # One request/response flow from each guest CPU, on that CPU's queue pair.
            flows, counted = probes.ping_pong_with_counters(board, guest, seconds=seconds,
                                                            board_cpu=servers_cpu, flows=n)
            rr_wiring = throughput.observe(net, counted.irq_before, counted.irq_after,
                                           counted.counters)
            wrong = throughput.wiring_problems(name, rr_wiring, net_queues)
            assert not wrong, "request/response: " + "; ".join(wrong)
            transactions = sum(f.received for f in flows)
            c = cost.of_run(mode, rr_wiring, counted.counters, transports, counted.vmm_before,
                            counted.vmm_after, transactions, procstat.USER_HZ, net_queues)
            rate = sockperf.transactions_per_s(flows)
            measurements.record("sockperf.transactions_per_s", rate, "1/s", **it)
            measurements.record("sockperf.flows_per_s",
                                [round(f.transactions_per_s, 1) for f in flows], **it)
            measurements.record("sockperf.latency_us",
                                sum(f.latency_us for f in flows) / len(flows), "us", **it)
            sample(throughput.TRANSACTIONS, name, rate)
            measurements.record("cost.run", asdict(c), **it)
            for figure, value in c.figures().items():
                measurements.record(f"cost.{figure}", value, **it)
                sample(figure, name, value)
            record_placement(measurements, "rr", mode, net, net_queues, n, counted, spread, it)

            run = probes.udp_to_each_cpu_with_counters(
                board, guest, n, seconds=seconds, board_cpu=servers_cpu,
                pps=int(board_options.get("bench_udp_pps", 0)))
            flood, counted = run.flood, run.counted
            record_queue_run(measurements, "udp", name, mode, net, net_queues, n, counted,
                             transports, flood.delivered, spread, it)
            # The kernels' counts (hil/measure/netstat.py), not the receivers' own.
            measurements.record("udp.received_per_s", flood.delivered_per_s, "1/s", **it)
            measurements.record("udp.loss", round(flood.loss, 4), **it)
            measurements.record("udp.stack_per_s", flood.stack_per_s, "1/s", **it)
            measurements.record("udp.flood", {"sent": flood.sent, "delivered": flood.delivered,
                                              "socket_full": flood.socket_full,
                                              "stack_per_cpu": [flood.stack.get(k, 0)
                                                                for k in range(n)],
                                              "seconds": flood.seconds}, **it)
            measurements.record("udp.iperf3", [run.result.packets, run.result.lost], **it)
            assert flood.sent > 0 and flood.delivered > 0, f"udp: {flood}"

            reads, counted = probes.blk_reads_with_counters(board, guest, "/dev/vda", n,
                                                            seconds=seconds)
            # Each blk-mq queue's completions on the CPUs it serves (the kernel series' K2).
            served = virtio.parse_blk_mq(guest.check(virtio.BLK_MQ_COMMAND))
            record_queue_run(measurements, "blk", name, mode, blk, virtio.blk_vq_names(n), n,
                             counted, transports, reads.reads, served, it)
            measurements.record("blk.iops", reads.iops, "1/s", **it)
            measurements.record("blk.reads_per_cpu", [reads.per_cpu.get(k, 0) for k in range(n)],
                                **it)
            if pin:
                # With the threads QEMU started since pinning: its I/O workers, whose number
                # moved reads by 9 % at 4 vCPUs until the board fixed it (`bench_iothread`).
                measurements.record("bench.vmm_threads_after",
                                    board.check(vmm.threads_script()).splitlines(), **it)

    by_size = {n: {metric: throughput.summarize(by_config) for metric, by_config in f.items()}
               for n, f in figures.items()}
    for n, summaries in by_size.items():
        record_summaries(measurements, summaries, clock, n)
    assert any(s.get(throughput.TRANSACTIONS) for s in by_size.values()), \
        "no transaction was measured"
    # The thresholds were taken with one vCPU and one queue pair.
    summaries = by_size.get(1, {})
    others = {m: s for m, s in summaries.items() if m != throughput.THROUGHPUT}
    gate = throughput.check_thresholds(summaries.get(throughput.THROUGHPUT, {}), thresholds,
                                       others)
    measurements.record("bench.gate", gate.verdict, clock=clock)
    assert not gate.violations, "; ".join(gate.violations)


def record_queue_run(measurements, workload: str, name: str, mode: str,
                     device: virtio.VirtioDevice, queues: list[str], n: int,
                     counted: probes.Counted, transports: list[int], done: int,
                     placement: dict[str, frozenset[int]], it: dict[str, Any]) -> None:
    """A several-queue run of one device: proves the wiring, records its cost per interrupt
    and each CPU's share of its queue interrupts; with a line per queue, where they landed."""
    wiring = throughput.observe(device, counted.irq_before, counted.irq_after, counted.counters)
    wrong = throughput.wiring_problems(name, wiring, queues)
    assert not wrong, f"{workload}: " + "; ".join(wrong)
    c = cost.of_run(mode, wiring, counted.counters, transports, counted.vmm_before,
                    counted.vmm_after, done, procstat.USER_HZ, queues)
    measurements.record(f"{workload}.run", asdict(c), **it)
    measurements.record(f"{workload}.exits_per_interrupt", c.exits_per_interrupt, **it)
    measurements.record(f"{workload}.injections_per_interrupt", c.injections_per_interrupt,
                        **it)
    record_placement(measurements, workload, mode, device, queues, n, counted, placement, it)


def record_placement(measurements, workload: str, mode: str, device: virtio.VirtioDevice,
                     queues: list[str], n: int, counted: probes.Counted,
                     placement: dict[str, frozenset[int]], it: dict[str, Any]) -> None:
    """Each CPU's share of the device's queue interrupts; with a line per queue, where they
    landed."""
    lines = virtio.lines_of(counted.irq_after, device.name)
    grown = interrupts.delta(counted.irq_before, counted.irq_after)
    measurements.record(f"{workload}.irqs_per_cpu",
                        virtio.per_cpu(lines, grown, throughput.queue_lines(mode, queues), n),
                        **it)
    if mode in ("per-vq", "msi-x"):
        problems = virtio.placement_problems(lines, grown, placement)
        assert not problems, f"{workload}: " + "; ".join(problems)


def record_summaries(measurements, summaries: dict[str, dict[str, throughput.Summary]],
                     clock: str, vcpus: int) -> None:
    for metric, by_config in summaries.items():
        for name, s in by_config.items():
            measurements.record(f"bench.{metric}.median", s.median, config=name, clock=clock,
                                runs=len(s.samples), vcpus=vcpus)
            measurements.record(f"bench.{metric}.spread", round(s.spread, 4), config=name,
                                clock=clock, runs=len(s.samples), vcpus=vcpus)
    # Ratios side by side, from this one run's interleaved iterations.
    for metric in (throughput.THROUGHPUT, throughput.TRANSACTIONS):
        if throughput.BASELINE in summaries.get(metric, {}):
            for name, r in throughput.ratios(summaries[metric], throughput.BASELINE).items():
                measurements.record(f"bench.{metric}.over_{throughput.BASELINE}", round(r, 4),
                                    config=name, clock=clock, vcpus=vcpus)
