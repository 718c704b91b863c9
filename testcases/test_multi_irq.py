"""Multi-line virtio-mmio on the patched VMM: layout, fallback, config line, irqfd bypass.

Needs a board whose environment declares the feature `multi-irq-vmm` and names its VMMs and
guest kernels under `options:` (`vmms: {stock, patched}`, `guest_kernels: {stock, patched}`).
"""

import pytest

from hil import dtb
from hil.labgrid import probes
from hil.measure import hint_trace, interrupts, kvm_trace, virtio, vring_trace

pytestmark = [pytest.mark.guest, pytest.mark.lg_feature("multi-irq-vmm"),
              pytest.mark.needs_options("vmms", "guest_kernels")]

NET_VQS = ["input.0", "output.0"]


def boot(boot_guest, board_options, guest_kernel="patched", vmm="patched", lines=1, **more):
    return boot_guest(kernel=board_options["guest_kernels"][guest_kernel],
                      qemu=board_options["vmms"][vmm], irq_lines=lines, **more)


def net_device(guest):
    (net,) = [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "net"]
    return net


def dt_lines(guest, base: int) -> tuple[int, list[str]]:
    node = f"/proc/device-tree/virtio_mmio@{base:x}"
    count = int(guest.check(f"wc -c < {node}/interrupts")) // 12  # 3 cells per specifier
    names = guest.run(f"tr '\\0' ' ' < {node}/interrupt-names").output.split()
    return count, names


@pytest.mark.parametrize(("lines", "mode"), [(3, "per-vq"), (2, "shared")])
def test_lines_match_the_device_tree_and_their_names_show_the_mode(boot_guest, board_options,
                                                                   lines, mode, measurements):
    guest = boot(boot_guest, board_options, lines=lines)
    net = net_device(guest)
    base = probes.virtio_transports(guest)[net.name]
    count, names = dt_lines(guest, base)
    assert count == lines
    assert names == (["config", "queues"] if lines == 2 else ["config", "vq0", "vq1"])
    assert net.irq_mode == mode
    rows = probes.guest_interrupts(guest)
    found = virtio.lines_of(rows, net.name)
    assert set(found) == virtio.expected_line_names(mode, NET_VQS)
    # Every line is its own GIC SPI.
    spis = [interrupts.gic_spi(r) for r in found.values()]
    assert None not in spis and len(set(spis)) == lines
    said = probes.kernel_lines(guest, "interrupt lines")
    assert f"using {lines} interrupt lines ({mode})" in "\n".join(said), said
    measurements.record(f"layout.{mode}.spis", sorted(spis))
    probes.ping_board(guest, 2)


MATRIX = [pytest.param(c.guest, c.vmm, c.lines, c.pairs, c.mode, id=c.id)
          for c in virtio.FALLBACK_MATRIX]


@pytest.mark.parametrize(("guest_kernel", "vmm", "lines", "pairs", "mode"), MATRIX)
def test_every_guest_and_vmm_combination_boots_passes_traffic_in_the_documented_mode(
        boot_guest, board_options, guest_kernel, vmm, lines, pairs, mode, measurements):
    guest = boot(boot_guest, board_options, guest_kernel, vmm, lines, queues=pairs, cpus=pairs)
    probes.ping_board(guest)
    net = net_device(guest)
    vq_names = virtio.net_vq_names(pairs)
    rows = probes.guest_interrupts(guest)
    assert set(virtio.lines_of(rows, net.name)) == virtio.expected_line_names(mode, vq_names)
    if guest_kernel == "patched":
        assert net.irq_mode == mode
    else:
        assert net.irq_mode is None  # Debian's driver has no irq_mode: names tell the mode
    measurements.record("fallback.mode", mode, guest=guest_kernel, vmm=vmm, lines=lines,
                        pairs=pairs)


def test_a_link_change_from_the_vmm_arrives_on_the_config_line(boot_guest, board_options, vmm,
                                                              measurements):
    guest = boot(boot_guest, board_options, lines=3)
    net = net_device(guest)
    iface = guest.check(f"ls /sys/bus/virtio/devices/{net.name}/net").strip()

    def config_count() -> int:
        rows = probes.guest_interrupts(guest)
        return virtio.lines_of(rows, net.name)["config"].total

    before = config_count()
    vmm.monitor("set_link n0 off")
    guest.check(f"for i in $(seq 50); do [ $(cat /sys/class/net/{iface}/carrier) = 0 ] && exit 0;"
                " sleep 0.1; done; exit 1")
    down = config_count()
    vmm.monitor("set_link n0 on")
    guest.check(f"for i in $(seq 50); do [ $(cat /sys/class/net/{iface}/carrier) = 1 ] && exit 0;"
                " sleep 0.1; done; exit 1")
    up = config_count()
    measurements.record("config_line.interrupts", [before, down, up])
    assert before < down < up, "each link change must raise the config line"
    probes.ping_board(guest, 1)


def test_line_0_signals_only_the_queues_without_a_line_of_their_own(boot_guest, board_options,
                                                                    vmm, measurements):
    """In per-vq mode virtio-net's control queue has no line: its completions raise line 0
    with InterruptStatus bit 0. Line 0's handler must then signal the control queue alone;
    signalling the input and output queues too would run their callbacks on two CPUs at once.
    A kprobe on vring_interrupt(), on from boot, records which line signalled which queue."""
    # The shell on the PL011: a virtio console's every write would be traced too.
    guest = boot(boot_guest, board_options, lines=3, console="uart",
                 append=f"{vmm.config.append} {vring_trace.BOOT_ARGS}")
    net = net_device(guest)
    assert net.irq_mode == "per-vq"
    iface = guest.check(f"ls /sys/bus/virtio/devices/{net.name}/net").strip()
    # Control-queue commands (receive modes); QEMU signals the first completion of a queue.
    guest.check(f"ip link set {iface} promisc on && ip link set {iface} promisc off")
    probes.ping_board(guest)
    signals = vring_trace.parse(guest.read_compressed(vring_trace.TRACE))
    lines = virtio.lines_of(probes.guest_interrupts(guest), net.name)
    irq = {name: int(row.irq) for name, row in lines.items()}
    by_line = vring_trace.queues_by_line(signals)
    measurements.record("line0.queues_signalled",
                        {name: len(by_line.get(n, ())) for name, n in irq.items()})
    for vq in NET_VQS:
        assert len(by_line.get(irq[vq], ())) <= 1, f"{vq}'s line signalled {by_line[irq[vq]]}"
    # The control queue is the one virtqueue without a line: line 0 signalled it, and only it.
    assert by_line.get(irq["config"]), "line 0 signalled no queue: the case proved nothing"
    name = {n: line for line, n in irq.items()}
    crossed = [f"{vq:#x} by {' and '.join(name[n] for n in by)}"
               for vq, by in vring_trace.crossed(signals, irq.values()).items()]
    assert len(by_line[irq["config"]]) == 1 and not crossed, (
        f"line 0 signalled {len(by_line[irq['config']])} virtqueues; signalled by two lines: "
        f"{'; '.join(crossed)}")


def test_queue_lines_with_vhost_net_bypass_userspace_through_irqfd(board, boot_guest,
                                                                  board_options, measurements):
    guest = boot(boot_guest, board_options, lines=3)
    run = probes.iperf_with_counters(board, guest, seconds=3)
    net = net_device(guest)
    rows = probes.guest_interrupts(guest)
    lines = virtio.lines_of(rows, net.name)
    queue_rows = [lines[q] for q in NET_VQS]
    grown = interrupts.delta(run.irq_before, run.irq_after)
    handled = sum(sum(grown[r.irq]) for r in queue_rows)
    injected = run.counters.userspace_injections([r.hwirq for r in queue_rows])
    base = probes.virtio_transports(guest)[net.name]
    status = run.counters.mmio_exits(base, kvm_trace.INTERRUPT_STATUS)
    acks = run.counters.mmio_exits(base, kvm_trace.INTERRUPT_ACK)
    measurements.record("irqfd.per-vq.userspace_injections", injected, "count")
    by_irqfd = run.counters.kernel_injections([r.hwirq for r in queue_rows])
    measurements.record("irqfd.per-vq.kernel_injections", by_irqfd, "count")
    measurements.record("irqfd.per-vq.queue_interrupts", handled, "count")
    measurements.record("irqfd.per-vq.status_and_ack_exits", status + acks, "count")
    measurements.record("iperf3.received_bps", run.result.received_bps, "bit/s",
                        backend="vhost-net", lines=3)
    assert handled > 0, "no interrupt arrived on the queue lines"
    assert injected == 0, f"{injected} queue interrupts were injected by the VMM"
    assert by_irqfd >= handled * 0.9, f"{by_irqfd} irqfd injections for {handled} interrupts"
    # Queue lines need no InterruptStatus read and no InterruptACK write.
    assert status + acks <= 4, f"{status} status reads and {acks} acks for queue interrupts"


def test_each_queue_line_follows_its_own_cpu_affinity(board, boot_guest, board_options,
                                                      measurements):
    guest = boot(boot_guest, board_options, lines=3, cpus=2)
    net = net_device(guest)
    lines = virtio.lines_of(probes.guest_interrupts(guest), net.name)
    pinned = {"input.0": 0, "output.0": 1}
    for vq, cpu in pinned.items():
        guest.check(f"echo {1 << cpu:x} > /proc/irq/{lines[vq].irq}/smp_affinity")
        effective = guest.check(f"cat /proc/irq/{lines[vq].irq}/effective_affinity")
        assert int(effective, 16) == 1 << cpu, f"{vq}: effective_affinity {effective}"
    run = probes.iperf_with_counters(board, guest, seconds=3)
    grown = interrupts.delta(run.irq_before, run.irq_after)
    for vq, cpu in pinned.items():
        measurements.record(f"affinity.{vq}.per_cpu", list(grown[lines[vq].irq]), cpu=cpu)
    problems = virtio.affinity_problems(lines, grown, pinned)
    assert not problems, "; ".join(problems)


def test_multiqueue_virtio_net_spreads_its_queue_lines_across_cpus(board, boot_guest,
                                                                   board_options, measurements):
    """virtio-net gives each queue pair a CPU through set_vq_affinity: the hints must reach the
    lines, and the GIC must deliver every queue's interrupts, input and output, there."""
    guest = boot(boot_guest, board_options, lines=5, queues=2, cpus=2)
    net = net_device(guest)
    assert net.irq_mode == "per-vq"
    lines = virtio.lines_of(probes.guest_interrupts(guest), net.name)
    cpu_of = {f"{kind}.{pair}": pair for pair in range(2) for kind in ("input", "output")}
    for vq, cpu in cpu_of.items():
        irq = lines[vq].irq
        hint = int(guest.check(f"cat /proc/irq/{irq}/affinity_hint"), 16)
        effective = int(guest.check(f"cat /proc/irq/{irq}/effective_affinity"), 16)
        measurements.record(f"affinity.mq.{vq}", {"hint": hint, "effective": effective})
        assert hint == 1 << cpu, f"{vq}: affinity hint {hint:#x}"
        assert effective == 1 << cpu, f"{vq}: effective affinity {effective:#x}"
    run = probes.iperf_from_each_cpu_with_counters(board, guest, cpus=2, seconds=3)
    grown = interrupts.delta(run.irq_before, run.irq_after)
    for vq in cpu_of:
        measurements.record(f"affinity.mq.{vq}.per_cpu", list(grown[lines[vq].irq]))
    problems = virtio.affinity_problems(lines, grown, cpu_of)
    assert not problems, "; ".join(problems)


# request_irq() on a line held without IRQF_SHARED: genirq says so, and that is the point.
@pytest.mark.kernel_log_allows(r"genirq: Flags mismatch irq \d+")
def test_a_line_another_driver_holds_makes_the_driver_fall_back_cleanly(board, boot_guest,
                                                                       board_options, vmm,
                                                                       measurements):
    """The guest's DT gives virtio-net's last queue line to the queue line of a virtio-rng
    that probes first: request_irq fails (-EBUSY), the driver releases what it took and
    settles on shared mode, the device follows, and both devices keep working."""
    rng = ("-device", "virtio-rng-device")  # lands on the transport below the network's
    vmm.dump_dtb("/tmp/hil-guest.dtb", qemu=board_options["vmms"]["patched"], irq_lines=3,
                 extra=rng)
    tree = dtb.DeviceTree(board.read_bytes("/tmp/hil-guest.dtb"))
    net = tree.find_node("virtio_mmio@a003e00")
    specs = tree.cells(net, "interrupts")
    rng_specs = tree.cells(tree.find_node("virtio_mmio@a003c00"), "interrupts")
    assert len(specs) == 9 and len(rng_specs) == 9
    tree.set_cells(net, "interrupts", specs[:6] + rng_specs[3:6])  # the rng's first queue line
    board.write_bytes("/tmp/hil-guest-claimed.dtb", tree.to_bytes())

    guest = boot(boot_guest, board_options, lines=3, extra=(*rng, "-dtb", "/tmp/hil-guest-claimed.dtb"))
    log = "\n".join(probes.kernel_lines(guest, "interrupts failed", "interrupt lines"))
    assert "per-vq interrupts failed (-16)" in log or "per-vq interrupts failed (-EBUSY)" in log
    assert "using 2 interrupt lines (shared)" in log
    found = {d.kind: d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND))}
    assert found["net"].irq_mode == "shared" and found["rng"].irq_mode == "per-vq"
    rows = probes.guest_interrupts(guest)
    assert set(virtio.lines_of(rows, found["net"].name)) == {"config", "queues"}
    probes.ping_board(guest)
    assert guest.check("dd if=/dev/hwrng bs=16 count=1 2>/dev/null | wc -c").strip() == "16"
    measurements.record("fallback.request_irq_busy.mode", found["net"].irq_mode)


def test_queue_lines_described_as_level_triggered_make_the_driver_fall_back(
        board, boot_guest, board_options, vmm, measurements):
    """Queue lines are pulsed (KVM's irqfd raises and lowers the SPI): a guest DT that
    describes them as level-high must not hang the guest. The driver refuses them, falls
    back to single mode on line 0 and the device follows."""
    vmm.dump_dtb("/tmp/hil-guest.dtb", qemu=board_options["vmms"]["patched"], irq_lines=3)
    tree = dtb.DeviceTree(board.read_bytes("/tmp/hil-guest.dtb"))
    net = tree.find_node("virtio_mmio@a003e00")
    specs = tree.cells(net, "interrupts")
    assert len(specs) == 9 and specs[5] == specs[8] == 1, specs  # three lines, edge rising
    level_high = 4  # IRQ_TYPE_LEVEL_HIGH
    for line in (1, 2):
        specs[3 * line + 2] = level_high
    tree.set_cells(net, "interrupts", specs)
    board.write_bytes("/tmp/hil-guest-level.dtb", tree.to_bytes())

    guest = boot(boot_guest, board_options, lines=3, extra=("-dtb", "/tmp/hil-guest-level.dtb"))
    log = "\n".join(probes.kernel_lines(guest, "edge triggered", "interrupt lines"))
    assert "is not edge triggered" in log
    assert "using 1 interrupt lines (single)" in log
    net = net_device(guest)
    assert net.irq_mode == "single"
    probes.ping_board(guest)
    measurements.record("fallback.level_queue_lines.mode", net.irq_mode)


def test_a_queue_line_whose_controller_never_probes_leaves_the_device_on_the_lines_before_it(
        board, boot_guest, board_options, vmm, measurements):
    """A queue line the platform cannot give (its interrupt controller has no driver bound:
    of_irq_get() says -EPROBE_DEFER) is optional: the transport waits for it only as long as
    the driver core waits for optional suppliers (without modules, until the initcalls end),
    then binds with the lines before it. A kernel without the series would use line 0 alone,
    so the device must not stay unbound. The guest's DT moves virtio-net's first queue line
    to such a controller: the network works in single mode, and a transport beside it keeps
    its own lines."""
    rng = ("-device", "virtio-rng-device")  # lands on the transport below the network's
    vmm.dump_dtb("/tmp/hil-guest.dtb", qemu=board_options["vmms"]["patched"], irq_lines=3,
                 extra=rng)
    tree = dtb.DeviceTree(board.read_bytes("/tmp/hil-guest.dtb"))
    node = tree.find_node("virtio_mmio@a003e00")
    specs = tree.cells(node, "interrupts")
    (gic,) = tree.cells("/", "interrupt-parent")
    absent = tree.free_phandle()
    assert len(specs) == 9, specs
    # No driver matches the controller's compatible, so it never gets an irq domain.
    tree.add_node("/", "hil-absent-intc", {
        "compatible": b"hil,absent-interrupt-controller\0", "interrupt-controller": b"",
        "#interrupt-cells": dtb.pack([1]), "phandle": dtb.pack([absent])})
    tree.set_cells(node, "interrupts-extended", [gic, *specs[0:3], absent, 0, gic, *specs[6:9]])
    tree.delete(node, "interrupts")
    board.write_bytes("/tmp/hil-guest-deferred.dtb", tree.to_bytes())

    guest = boot(boot_guest, board_options, lines=3,
                 extra=(*rng, "-dtb", "/tmp/hil-guest-deferred.dtb"))
    transport = "/sys/bus/platform/devices/a003e00.virtio_mmio"
    bound = guest.run(f"test -e {transport}/driver").ok
    kinds = {d.kind: d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND))}
    said = probes.kernel_lines(guest, "a003e00.virtio_mmio")
    measurements.record("fallback.deferred_line", {
        "bound": bound, "net_mode": kinds["net"].irq_mode if "net" in kinds else None})
    assert bound and "net" in kinds, \
        "the transport stays unbound for a queue line that never comes: " + "; ".join(said)
    assert kinds["net"].irq_mode == "single", "; ".join(said)
    assert any("interrupt line 1 is not available" in ln for ln in said), "; ".join(said)
    probes.ping_board(guest)
    assert kinds["rng"].irq_mode == "per-vq"
    assert guest.check("dd if=/dev/hwrng bs=16 count=1 2>/dev/null | wc -c").strip() == "16"


def test_unbinding_clears_the_hints_of_its_own_lines_and_never_line_0s(boot_guest, board_options,
                                                                      measurements):
    """Line 0 is requested IRQF_SHARED: another device's driver may share it and have set its
    affinity hint. Freeing the lines must clear the hints of the transport's own queue lines,
    never line 0's. A kprobe on __irq_apply_affinity_hint() sees every hint set or cleared
    while the transport is unbound."""
    guest = boot(boot_guest, board_options, lines=3)
    net = net_device(guest)
    assert net.irq_mode == "per-vq"
    rows = probes.guest_interrupts(guest)
    irq = {name: int(row.irq) for name, row in virtio.lines_of(rows, net.name).items()}
    base = probes.virtio_transports(guest)[net.name]
    guest.check(hint_trace.ENABLE)
    guest.check(f"echo {base:x}.virtio_mmio > /sys/bus/platform/drivers/virtio-mmio/unbind")
    touched = {h.irq for h in hint_trace.parse(guest.read_compressed(hint_trace.TRACE))}
    measurements.record("unbind.hints_touched",
                        {name: n in touched for name, n in irq.items()})
    assert {irq[vq] for vq in NET_VQS} <= touched, \
        f"no queue line's hint was cleared (touched: {sorted(touched)}): the case proved nothing"
    assert irq["config"] not in touched, f"line 0 (irq {irq['config']}) had its hint cleared"


@pytest.mark.parametrize(("accepted", "mode", "refused"), [
    (0b011, "shared", ["per-vq"]),
    (0b001, "single", ["per-vq", "shared"]),
], ids=["per-vq-refused", "per-vq-and-shared-refused"])
def test_a_device_that_refuses_a_mode_is_offered_the_next_one_down(
        boot_guest, board_options, accepted, mode, refused, measurements):
    """A VMM may refuse a mode (the patched QEMU's x-irq-modes makes every transport do so):
    the driver reads each mode back and falls back per-vq, shared, single; the device
    follows, and the network works on the lines of the mode it took."""
    guest = boot(boot_guest, board_options, lines=3,
                 extra=("-global", f"virtio-mmio.x-irq-modes={accepted}"))
    net = net_device(guest)
    base = probes.virtio_transports(guest)[net.name]
    log = probes.kernel_lines(guest, f"{base:x}.virtio_mmio")
    said = [ln.split("device refused interrupt mode ")[1] for ln in log
            if "device refused interrupt mode " in ln]
    measurements.record("fallback.refused_modes", {"accepted": accepted, "mode": net.irq_mode})
    assert said == refused, "\n".join(log)
    assert net.irq_mode == mode
    rows = probes.guest_interrupts(guest)
    assert set(virtio.lines_of(rows, net.name)) == virtio.expected_line_names(mode, NET_VQS)
    probes.ping_board(guest)


def test_the_mode_message_is_not_repeated_on_resume(boot_guest, board_options, measurements):
    """find_vqs runs again on every resume; the mode did not change, so the kernel log must
    not say it again."""
    guest = boot(boot_guest, board_options, lines=3)
    message = "using 3 interrupt lines (per-vq)"
    before = len(probes.kernel_lines(guest, message))
    guest.check("echo 0 > /sys/module/suspend/parameters/pm_test_delay && "
                "echo devices > /sys/power/pm_test")
    guest.check("for i in 1 2 3; do echo freeze > /sys/power/state || exit 1; done",
                timeout=90)
    log = "\n".join(probes.kernel_lines(guest, message, "PM: suspend exit"))
    measurements.record("resume.mode_messages", [before, log.count(message)])
    assert log.count("PM: suspend exit") >= 3
    assert before == 1 and log.count(message) == 1, \
        f"{log.count(message) - before} more mode messages after 3 resumes"
    assert net_device(guest).irq_mode == "per-vq"
    probes.ping_board(guest, 1)


def test_each_blk_mq_queue_completes_on_the_cpus_it_serves(board, boot_guest, board_options,
                                                         vmm, measurements):
    """virtio-blk asks for its queue lines to be spread over the CPUs (an irq_affinity
    descriptor) and sets no hints; blk-mq maps each queue to CPUs. With 4 vCPUs and 4 queues,
    every queue serves a CPU and its completions arrive on the CPUs it serves, even with
    irqaffinity=0-1 (the lines are spread, not left where the default affinity puts them; on
    GICv2 that is one CPU for all). Direct reads from each CPU in turn drive every queue."""
    board.check("dd if=/dev/zero of=/tmp/hil-mq.img bs=64k count=64 2>/dev/null")
    append = vmm.config.append + " irqaffinity=0-1"
    guest = boot(boot_guest, board_options, lines=5, cpus=4, append=append, extra=(
        "-drive", "file=/tmp/hil-mq.img,if=none,id=d0,format=raw",
        "-device", "virtio-blk-device,drive=d0,num-queues=4",
    ))
    blk = next(d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "blk")
    assert blk.irq_mode == "per-vq"
    out = guest.check(virtio.BLK_MQ_COMMAND)
    cpus_of = virtio.parse_blk_mq(out)
    assert len(cpus_of) == 4, out
    idle = [q for q, cpus in cpus_of.items() if not cpus]
    assert not idle, f"queues {idle} serve no CPU: {out}"

    before = probes.guest_interrupts(guest)
    guest.check("for c in 0 1 2 3; do taskset -c $c dd if=/dev/vda of=/dev/null bs=4k "
                "count=64 skip=$((c * 256)) iflag=direct 2>/dev/null || exit 1; done")
    after = probes.guest_interrupts(guest)
    lines = virtio.lines_of(after, blk.name)
    grown = interrupts.delta(before, after)
    measurements.record("blk_mq.placement", {
        vq: {"cpus": sorted(cpus), "per_cpu": list(grown.get(lines[vq].irq, ()))}
        for vq, cpus in cpus_of.items() if vq in lines})
    problems = virtio.placement_problems(lines, grown, cpus_of)
    assert not problems, "; ".join(problems)
