import json
from pathlib import Path

import yaml

from hil.measure import throughput, wiringbench

PLACES = Path(__file__).resolve().parents[2] / "places"


def rows(tps: dict[str, list[float]], clock: str = "icount") -> list[dict]:
    out = []
    for config, xs in tps.items():
        for i, x in enumerate(xs):
            out.append({"name": "sockperf.transactions_per_s", "value": x, "config": config,
                        "iteration": i, "clock": clock})
            out.append({"name": "iperf3.received_bps", "value": x * 1e5, "config": config,
                        "iteration": i, "clock": clock})
    return out


SESSION = {"vhost-net": [7000, 7100, 7050], "vhost-net-irqfd": [9500, 9600, 9400],
           "virtio-net-pci-msi": [9700, 9650, 9800]}


def test_each_wiring_gets_one_row_with_median_spread_and_runs():
    text = wiringbench.table(wiringbench.samples(rows(SESSION)))
    head, *body = text.splitlines()
    assert head.split()[:3] == ["wiring", "Gbit/s", "transactions/s"]
    assert [line.split()[0] for line in body] == ["vhost-net", "virtio-net-pci-msi",
                                                  "vhost-net-irqfd"]
    assert "9500 (2.1%, n=3)" in body[2]


def test_ratios_are_taken_iteration_by_iteration_in_one_run():
    data = wiringbench.samples(rows(SESSION))
    (irqfd_over_vhost, irqfd_over_pci) = [r for r in wiringbench.ratios(data, "transactions")]
    assert (irqfd_over_vhost.num, irqfd_over_vhost.den) == ("vhost-net-irqfd", "vhost-net")
    assert irqfd_over_vhost.per_iteration == (9500 / 7000, 9600 / 7100, 9400 / 7050)
    assert irqfd_over_vhost.ahead == 3
    assert irqfd_over_pci.ahead == 0
    assert any("ahead in 0/3" in line for line in wiringbench.ratio_lines(data))


def test_sessions_that_agree_in_order_say_so_and_show_how_far_they_differ():
    one = wiringbench.samples(rows(SESSION))
    two = wiringbench.samples(rows({k: [x * 1.01 for x in xs] for k, xs in SESSION.items()}))
    text = wiringbench.across_sessions([one, two])
    assert "ordering by transactions/s: the same in every session" in text
    assert "1.0%" in text
    swapped = dict(SESSION, **{"vhost-net-irqfd": [9900, 9950, 9990]})
    text = wiringbench.across_sessions([one, wiringbench.samples(rows(swapped))])
    assert "ordering by transactions/s: DIFFERS between sessions" in text


def test_the_clock_of_the_figures_is_reported():
    assert wiringbench.clocks(rows(SESSION)) == {"icount"}


def test_where_the_cost_goes_per_transaction():
    run = {"transactions": 1000, "exits": {"dabt": 2000, "wfx": 1000},
           "vmm_ticks": {"vhost": 10, "vmm": 0, "vcpu": 5}, "ticks_per_s": 100}
    text = wiringbench.where_cost_goes([{"name": "cost.run", "config": "vhost-net",
                                         "value": run}])
    head, row = text.splitlines()
    assert head.split() == ["wiring", "dabt", "wfx", "vcpu-us", "vhost-us", "vmm-us"]
    assert row.split() == ["vhost-net", "2.00", "1.00", "50.00", "100.00", "0.00"]


# Two sessions of `hil bench --wiring` on places/virtual-costmodel.yaml as it is (five board
# CPUs pinned, guests of 1, 2 and 4 vCPUs, two iterations each, one request/response flow
# from each guest CPU, the virtio-blk iothread's pool fixed at one I/O worker).
SESSIONS = ("bench-wiring-icount-5cpu-pool1-session-1.jsonl",
            "bench-wiring-icount-5cpu-pool1-session-2.jsonl")
# The pair before, with QEMU's default pool (grown on demand): 4-vCPU reads in two levels.
RR_FLOWS_SESSIONS = ("bench-wiring-icount-5cpu-rrflows-session-1.jsonl",
                     "bench-wiring-icount-5cpu-rrflows-session-2.jsonl")
# The same pair's settings with no polling anywhere on the board: KVM's halt polling off
# (`kvm.halt_poll_ns=0` added to the board's boot_args) and the virtio-blk iothread's
# (`bench_iothread: poll-max-ns=0`), two sessions at once (README, "What pinning got").
NO_POLL_SESSIONS = ("bench-wiring-icount-5cpu-nopoll-session-1.jsonl",
                    "bench-wiring-icount-5cpu-nopoll-session-2.jsonl")
# Two earlier pairs on the same board with one unpinned request/response flow at every size;
# the thresholds were chosen from the first pair's one-vCPU runs.
ONE_FLOW_SESSIONS = ("bench-wiring-icount-5cpu-session-1.jsonl",
                     "bench-wiring-icount-5cpu-session-2.jsonl",
                     "bench-wiring-icount-5cpu-udpcounted-session-1.jsonl",
                     "bench-wiring-icount-5cpu-udpcounted-session-2.jsonl")
# Two earlier sessions on the same board with one CPU and one vCPU (revision 2 of the series).
ONE_CPU_SESSIONS = ("bench-wiring-icount-1cpu-session-1.jsonl",
                    "bench-wiring-icount-1cpu-session-2.jsonl")
# Four earlier sessions on the same board with two CPUs (the last two with
# pin_vmm: {vcpus: 1, others: 0}): the same wiring ran in two regimes there.
TWO_CPU_SESSIONS = ("bench-wiring-icount-session-1.jsonl", "bench-wiring-icount-session-2.jsonl",
                    "bench-wiring-icount-session-3-pinned.jsonl",
                    "bench-wiring-icount-session-4-pinned.jsonl")


def recorded(data, name: str) -> list[dict]:
    return [json.loads(line) for line in (data / name).read_text().splitlines()]


def summaries(data_: wiringbench.Samples) -> dict[str, dict[str, throughput.Summary]]:
    return {m: throughput.summarize({c: list(it.values()) for c, it in by_config.items()})
            for m, by_config in data_.items()}


def gate(s: dict[str, dict[str, throughput.Summary]]) -> throughput.GateResult:
    options = yaml.safe_load((PLACES / "virtual-costmodel.yaml").read_text())
    declared = options["targets"]["main"]["options"]["thresholds"]
    return throughput.check_thresholds(
        s[throughput.THROUGHPUT], declared, {m: v for m, v in s.items() if m != "throughput"})


def test_the_cost_model_boards_thresholds_pass_every_recorded_session(data):
    for name in SESSIONS + RR_FLOWS_SESSIONS + ONE_FLOW_SESSIONS:
        rows = recorded(data, name)
        assert wiringbench.clocks(rows) == {"icount"}
        result = gate(summaries(wiringbench.samples(rows, 1)))
        assert result.gated and result.violations == (), name


def test_the_cost_model_boards_thresholds_fail_when_irqfd_is_lost(data):
    # The irqfd wirings measured as what the single line costs: the VMM relays every interrupt.
    s = summaries(wiringbench.samples(recorded(data, SESSIONS[0]), 1))
    for by_config in s.values():
        if "vhost-net" in by_config:
            by_config["vhost-net-irqfd"] = by_config["vhost-net-irqfd-shared"] = \
                by_config["vhost-net"]
    assert gate(s).violations == (
        "vhost-net-irqfd/vhost-net transactions: 1.00 < 1.8",
        "vhost-net-irqfd-shared/vhost-net transactions: 1.00 < 1.8",
        "vhost-net-irqfd/virtio-net-pci-msi transactions: 0.52 < 0.95",
        "vhost-net-irqfd/vhost-net: 1.00 < 1.05",
        "vhost-net-irqfd: exits_per_interrupt 4 > 1.3",
        "vhost-net-irqfd-shared: exits_per_interrupt 4 > 2.4",
        "vhost-net-irqfd: vmm_us_per_transaction 170 > 90")


def test_recorded_sessions_rank_irqfd_above_the_single_line_every_time(data):
    sessions = [wiringbench.samples(recorded(data, name), 1)
                for name in ONE_CPU_SESSIONS + TWO_CPU_SESSIONS + ONE_FLOW_SESSIONS
                + RR_FLOWS_SESSIONS + SESSIONS]
    for s in sessions:
        (irqfd_over_single,) = [r for r in wiringbench.ratios(s, "transactions")
                                if (r.num, r.den) == ("vhost-net-irqfd", "vhost-net")]
        assert irqfd_over_single.ahead == len(irqfd_over_single.per_iteration) == 2
    text = wiringbench.across_sessions(sessions[2:4])
    assert "vhost-net-irqfd         14542      14708      1.1%" in text


def test_on_one_board_cpu_the_sessions_agree_within_two_percent_in_the_same_order(data):
    sessions = [wiringbench.samples(recorded(data, name)) for name in ONE_CPU_SESSIONS]
    text = wiringbench.across_sessions(sessions)
    assert "vhost-net-irqfd         13260      13045      1.6%" in text
    # Three wirings within 1.5 % of each other: a strict order of them is not repeatable,
    # the order with ties is.
    assert "ordering by Gbit/s: DIFFERS between sessions" in text
    assert "ordering by transactions/s, within 2% a tie (≈): the same in every session" in text
    assert ("vhost-net-irqfd ≈ vhost-net-irqfd-shared ≈ virtio-net-pci-msi > vhost-net > "
            "virtio-net") in text
    for s in sessions:
        for metric in ("throughput", "transactions"):
            for config, runs in s[metric].items():
                assert throughput.Summary(config, tuple(runs.values())).spread <= 0.02


def test_ranking_groups_wirings_within_the_tie_of_the_best_of_their_group():
    data = {"transactions": {"a": {0: 100.0}, "b": {0: 98.5}, "c": {0: 97.0}, "d": {0: 90.0}}}
    assert wiringbench.ranking(data, "transactions") == "a ≈ b > c > d"
    assert wiringbench.ranking(data, "transactions", tie=0.0) == "a > b > c > d"


def test_runs_of_each_guest_size_make_their_own_table_and_older_rows_count_as_one_vcpu():
    one = rows(SESSION)  # recorded before there were sizes: no `vcpus`
    four = [{**r, "vcpus": 4, "value": r["value"] * 3} for r in rows(SESSION)]
    four += [{"name": "udp.received_per_s", "value": 250000.0 + i, "config": c, "iteration": i,
              "vcpus": 4} for c in SESSION for i in range(3)]
    assert wiringbench.sizes(one + four) == [1, 4]
    small = wiringbench.samples(one + four, 1)
    big = wiringbench.samples(one + four, 4)
    assert small["transactions"]["vhost-net"] == {0: 7000, 1: 7100, 2: 7050}
    assert big["transactions"]["vhost-net"] == {0: 21000, 1: 21300, 2: 21150}
    assert wiringbench.UDP_RATE not in small
    text = wiringbench.table(big, wiringbench.MQ_COLUMNS)
    assert text.splitlines()[0].split()[:5] == ["wiring", "UDP", "64", "B", "kpackets/s"]
    assert "250.0 (0.0%, n=3)" in text
    assert wiringbench.table(small, wiringbench.MQ_COLUMNS) == ""
    assert any(line.startswith(wiringbench.UDP_RATE) for line in wiringbench.ratio_lines(big))


def test_each_cpus_share_of_the_queue_interrupts_is_shown_per_wiring_and_workload():
    rows_ = [{"name": "udp.irqs_per_cpu", "value": [900, 100], "config": "vhost-net",
              "vcpus": 2},
             {"name": "udp.irqs_per_cpu", "value": [500, 500], "config": "vhost-net-irqfd",
              "vcpus": 2},
             {"name": "blk.irqs_per_cpu", "value": [0, 0], "config": "vhost-net", "vcpus": 2},
             {"name": "udp.irqs_per_cpu", "value": [7], "config": "vhost-net", "vcpus": 1}]
    head, *body = wiringbench.interrupts_per_cpu(rows_, 2).splitlines()
    assert head.split() == ["wiring", "workload", "CPU0", "CPU1"]
    assert [line.split() for line in body] == [["vhost-net", "udp", "90%", "10%"],
                                               ["vhost-net-irqfd", "udp", "50%", "50%"]]
    assert wiringbench.interrupts_per_cpu(rows_, 4) == ""


def test_with_five_pinned_cpus_each_guest_size_repeats_its_ordering_across_sessions(data):
    """With one pinned request/response flow per guest CPU, transactions/s repeat within 2 %
    in every wiring at every guest size, in both sessions, and order the wirings the same way
    (ties within 2 %); a line per queue is ahead of the shared line at 2 and 4 vCPUs in every
    iteration, and within 2 % of MSI-X at every size."""
    rows = [recorded(data, name) for name in SESSIONS]
    assert wiringbench.sizes(rows[0]) == [1, 2, 4]
    for n in (1, 2, 4):
        sessions = [wiringbench.samples(r, n) for r in rows]
        ranks = {wiringbench.ranking(s, "transactions") for s in sessions}
        assert len(ranks) == 1, (n, ranks)
        for s in sessions:
            for config, runs in s["transactions"].items():
                assert throughput.Summary(config, tuple(runs.values())).spread <= 0.02, (n, config)
            ratios = {(r.num, r.den): r for r in wiringbench.ratios(s, "transactions")}
            against_msi = ratios[("vhost-net-irqfd", "virtio-net-pci-msi")]
            assert all(0.98 <= x <= 1.02 for x in against_msi.per_iteration), (n, against_msi)
            if n > 1:
                over_shared = ratios[("vhost-net-irqfd", "vhost-net-irqfd-shared")]
                assert over_shared.ahead == 2 and over_shared.median > 1.02, (n, over_shared)


def test_one_unpinned_flow_ran_in_two_regimes_on_the_shared_line(data):
    """Why each CPU now has its own pinned flow: with one flow, wherever the scheduler put
    its client, the shared line at 2 vCPUs moved between two levels within a session."""
    sessions = [wiringbench.samples(recorded(data, name), 2) for name in ONE_FLOW_SESSIONS[2:]]
    shared = [throughput.Summary("s", tuple(s["transactions"]["vhost-net-irqfd-shared"].values()))
              for s in sessions]
    assert max(s.spread for s in shared) > 0.1


def _read_spreads(data, names: tuple[str, ...], vcpus: int) -> dict[str, float]:
    """Each wiring's largest spread of reads/s within a session."""
    sessions = [wiringbench.samples(recorded(data, name), vcpus) for name in names]
    return {c: max(throughput.Summary(c, tuple(s[wiringbench.BLK_IOPS][c].values())).spread
                   for s in sessions) for c in sessions[0][wiringbench.BLK_IOPS]}


def test_reads_at_four_vcpus_moved_in_two_levels_while_polling_and_no_polling_is_no_cure(data):
    """With QEMU's default I/O worker pool, reads at 4 vCPUs with a line per queue and with
    MSI-X moved between two levels (9 %) while the board's KVM polled halted vCPUs; with no
    polling they repeat within 2.4 %, but reads at 2 vCPUs then move by 3.5 % and the shared
    line's request/response deficit at 2 vCPUs is gone: the board keeps polling (what arm64
    KVM does by default) and fixes the pool instead (next case)."""
    polling = _read_spreads(data, RR_FLOWS_SESSIONS, 4)
    quiet = _read_spreads(data, NO_POLL_SESSIONS, 4)
    for wiring in ("vhost-net-irqfd", "virtio-net-pci-msi"):
        assert polling[wiring] > 0.08 and quiet[wiring] < 0.025, (wiring, polling, quiet)
    assert _read_spreads(data, NO_POLL_SESSIONS, 2)["vhost-net-irqfd"] > 0.03
    assert max(_read_spreads(data, RR_FLOWS_SESSIONS, 2).values()) < 0.015
    for names, ahead in ((RR_FLOWS_SESSIONS, True), (NO_POLL_SESSIONS, False)):
        for name in names:
            s = wiringbench.samples(recorded(data, name), 2)
            (r,) = [r for r in wiringbench.ratios(s, "transactions")
                    if (r.num, r.den) == ("vhost-net-irqfd", "vhost-net-irqfd-shared")]
            assert (min(r.per_iteration) > 1.02) is ahead, (name, r.per_iteration)


def test_with_the_iothreads_pool_fixed_reads_repeat_within_two_percent_while_the_board_polls(
        data):
    """The two levels came from QEMU's I/O worker pool, which grows on demand: with one worker
    the board keeps polling, every read cell repeats within 2 % in both sessions, and the
    shared line's request/response deficit at 2 vCPUs stays."""
    for n in (1, 2, 4):
        spreads = _read_spreads(data, SESSIONS, n)
        assert len(spreads) == 4 and max(spreads.values()) <= 0.02, (n, spreads)
        sessions = [wiringbench.samples(recorded(data, name), n) for name in SESSIONS]
        # The same order in both, wiring by wiring (at 1 vCPU MSI-X reads 1.6 % and 2.2 % behind
        # a line per queue: a 2 % tie in one session, not in the other).
        assert len({wiringbench.ranking(s, wiringbench.BLK_IOPS, tie=0.0)
                     for s in sessions}) == 1, n
    for name in SESSIONS:
        s = wiringbench.samples(recorded(data, name), 2)
        (r,) = [r for r in wiringbench.ratios(s, "transactions")
                if (r.num, r.den) == ("vhost-net-irqfd", "vhost-net-irqfd-shared")]
        assert min(r.per_iteration) > 1.02, (name, r.per_iteration)
