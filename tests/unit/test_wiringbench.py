from hil import wiringbench


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
