from hil.measure import interrupts, virtio, vring_trace

# The shape of a kprobe event line in /sys/kernel/tracing/trace (6.12).
LINE = ("          <idle>-0       [000] d.h1.    {t}: vring: (vring_interrupt+0x0/0xd8) "
        "irq={irq} vq={vq}\n")
HEADER = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 4/4   #P:1\n"


def trace(*calls: tuple[int, int]) -> str:
    return HEADER + "".join(LINE.format(t=f"{i}.000000", irq=irq, vq=hex(vq))
                            for i, (irq, vq) in enumerate(calls))


def test_each_call_is_a_line_and_a_queue():
    signals = vring_trace.parse(trace((14, 0xFFFF0000C1), (15, 0xFFFF0000C2)))
    assert signals == [vring_trace.Signal(14, 0xFFFF0000C1), vring_trace.Signal(15, 0xFFFF0000C2)]
    assert vring_trace.parse(HEADER) == []


def test_line_0_walking_queues_with_lines_of_their_own_crosses_them():
    # Revision 1: line 0 (14) signals the control queue and both queues that have a line.
    signals = vring_trace.parse(trace((15, 0xA), (16, 0xB), (14, 0xA), (14, 0xB), (14, 0xC)))
    assert vring_trace.queues_by_line(signals)[14] == {0xA, 0xB, 0xC}
    assert vring_trace.crossed(signals, [14, 15, 16]) == {0xA: [14, 15], 0xB: [14, 16]}


def test_each_line_signalling_its_own_queues_crosses_nothing():
    signals = vring_trace.parse(trace((15, 0xA), (16, 0xB), (14, 0xC), (15, 0xA)))
    assert vring_trace.queues_by_line(signals) == {14: {0xC}, 15: {0xA}, 16: {0xB}}
    assert vring_trace.crossed(signals, [14, 15, 16]) == {}


def test_other_devices_lines_are_left_out():
    # The console's line (20) signals its own queues; a queue address is one device's.
    signals = vring_trace.parse(trace((20, 0xD), (15, 0xA)))
    assert vring_trace.crossed(signals, [14, 15, 16]) == {}


def test_the_probe_is_set_from_the_command_line_with_a_full_buffer():
    args = vring_trace.BOOT_ARGS.split()
    assert args[0].startswith("kprobe_event=p:hil/vring,vring_interrupt,")
    assert " " not in args[0] and "ftrace=nop" in args and "trace_options=nooverwrite" in args


def test_recorded_per_vq_guest_line_0_signals_the_control_queue_alone(data):
    """Revision 2 on the virtual lab: virtio-net on 3 lines, a promisc toggle and a ping."""
    signals = vring_trace.parse((data / "vring-trace-per-vq.txt").read_text())
    rows = interrupts.parse((data / "vring-trace-per-vq-interrupts.txt").read_text())
    irq = {name: int(row.irq) for name, row in virtio.lines_of(rows, "virtio0").items()}
    assert irq == {"config": 14, "input.0": 15, "output.0": 16}
    by_line = vring_trace.queues_by_line(signals)
    assert len(signals) == 17 and sorted(by_line) == [14, 15, 16]
    assert all(len(vqs) == 1 for vqs in by_line.values())
    assert vring_trace.crossed(signals, [14, 15, 16]) == {}


def test_recorded_revision_1_line_0_walks_every_queue(data):
    """Revision 1 of the kernel series, the same run: line 0 (14) signals all three queues,
    so input.0 and output.0 are signalled by two lines each."""
    signals = vring_trace.parse((data / "vring-trace-per-vq-revision-1.txt").read_text())
    assert len(vring_trace.queues_by_line(signals)[14]) == 3
    crossed = vring_trace.crossed(signals, [14, 15, 16])
    assert sorted(crossed.values()) == [[14, 15], [14, 16]]
