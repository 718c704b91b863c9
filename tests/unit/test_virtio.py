from hil.measure import interrupts, virtio


def test_device_list_with_and_without_irq_mode_on_either_transport():
    found = virtio.parse_list("virtio0 0x0001 single platform\nvirtio1 0x0002 per-vq platform\n"
                              "virtio2 0x0004 - platform\nvirtio3 0x0003 - pci\n")
    assert [(d.name, d.kind, d.irq_mode, d.transport) for d in found] == [
        ("virtio0", "net", "single", "mmio"), ("virtio1", "blk", "per-vq", "mmio"),
        ("virtio2", "rng", None, "mmio"), ("virtio3", "console", None, "pci")]


def test_lines_of_a_device_by_suffix():
    rows = interrupts.parse(
        "  CPU0\n 14: 1 GIC-0 79 Edge virtio0-config\n 15: 9 GIC-0 180 Edge virtio0-input.0\n"
        " 16: 3 GIC-0 181 Edge virtio0-output.0\n 17: 2 GIC-0 78 Edge virtio10\n")
    assert sorted(virtio.lines_of(rows, "virtio0")) == ["config", "input.0", "output.0"]
    assert list(virtio.lines_of(rows, "virtio10")) == [""]


def test_each_mode_names_its_lines():
    assert virtio.expected_line_names("single", ["input.0", "output.0"]) == {""}
    assert virtio.expected_line_names("shared", ["input.0", "output.0"]) == {"config", "queues"}
    assert virtio.expected_line_names("per-vq", ["input.0", "output.0"]) == \
        {"config", "input.0", "output.0"}


# Two queue pairs on a two-CPU guest; pair n is bound to CPU n. Counts: (CPU0, CPU1) per queue.
MQ = """\
           CPU0       CPU1
 14:          1          0     GIC-0  79 Edge      virtio0-config
 15: {0[0]:10d} {0[1]:10d}     GIC-0 212 Edge      virtio0-input.0
 16: {1[0]:10d} {1[1]:10d}     GIC-0 213 Edge      virtio0-output.0
 17: {2[0]:10d} {2[1]:10d}     GIC-0 214 Edge      virtio0-input.1
 18: {3[0]:10d} {3[1]:10d}     GIC-0 215 Edge      virtio0-output.1
"""
BEFORE = MQ.format((10, 0), (5, 0), (0, 12), (0, 7))
PAIRS = {"input.0": 0, "output.0": 0, "input.1": 1, "output.1": 1}


def problems_after(*counts: tuple[int, int]) -> list[str]:
    before, after = interrupts.parse(BEFORE), interrupts.parse(MQ.format(*counts))
    lines = virtio.lines_of(after, "virtio0")
    return virtio.affinity_problems(lines, interrupts.delta(before, after), PAIRS)


def test_every_queue_taking_interrupts_on_its_own_cpu_is_fine(data):
    # Recorded on the virtual lab: two queue pairs, two CPUs, iperf3 with two streams.
    before = interrupts.parse((data / "guest-interrupts-mq-before.txt").read_text())
    after = interrupts.parse((data / "guest-interrupts-mq-after.txt").read_text())
    lines = virtio.lines_of(after, "virtio0")
    assert virtio.affinity_problems(lines, interrupts.delta(before, after), PAIRS) == []
    assert problems_after((900, 0), (300, 0), (0, 800), (0, 200)) == []


def test_an_output_queue_firing_on_another_cpu_is_a_problem():
    assert problems_after((900, 0), (300, 0), (0, 800), (4, 200)) == [
        "output.1 bound to CPU1 fired elsewhere: per CPU [4, 193]"]


def test_a_queue_without_interrupts_is_a_problem_not_a_pass():
    assert problems_after((900, 0), (300, 0), (0, 800), (0, 7)) == [
        "output.1 took no interrupt during the run"]


def test_a_queue_without_a_line_is_a_problem():
    lines = virtio.lines_of(interrupts.parse(BEFORE), "virtio0")
    del lines["input.1"]
    assert virtio.affinity_problems(lines, {}, {"input.1": 1}) == [
        "input.1: no interrupt line (lines: ['config', 'input.0', 'output.0', 'output.1'])"]


def test_a_cpu_list_reads_as_the_kernel_writes_it():
    assert virtio.parse_cpu_list("0-1,3\n") == {0, 1, 3}
    assert virtio.parse_cpu_list("2") == {2}
    assert virtio.parse_cpu_list("") == frozenset()


def test_a_queue_whose_completions_land_outside_its_blk_mq_cpus_is_a_problem():
    lines = virtio.lines_of(interrupts.parse(BEFORE), "virtio0")
    irq = lines["input.1"].irq
    # All of the queue's interrupts on CPU0 while blk-mq mapped it to CPU1: GICv2's default.
    assert virtio.placement_problems(lines, {irq: (12, 0)}, {"input.1": frozenset({1})}) == [
        "input.1 bound to CPU1 fired elsewhere: per CPU [12, 0]"]
    assert virtio.placement_problems(lines, {irq: (0, 12)}, {"input.1": frozenset({0, 1})}) == []
    assert virtio.placement_problems(lines, {irq: (3, 0)}, {"input.1": frozenset()}) == [
        "input.1 bound to no CPU fired elsewhere: per CPU [3, 0]"]


def test_each_cpus_interrupts_of_a_devices_queue_lines_add_up():
    lines = {"req.0": interrupts.IrqRow("40", (0, 0)), "req.1": interrupts.IrqRow("41", (0, 0)),
             "config": interrupts.IrqRow("39", (0, 0))}
    grown = {"40": (10, 1), "41": (0, 20), "39": (3, 3)}
    assert virtio.per_cpu(lines, grown, virtio.blk_vq_names(2), 2) == [10, 21]
    assert virtio.per_cpu(lines, grown, ["queues"], 2) == [0, 0]  # no such line: nothing


def test_the_blk_mq_map_names_each_queue_and_its_cpus():
    assert virtio.parse_blk_mq("0:0\n1:1\n2:2-3\n") == {
        "req.0": frozenset({0}), "req.1": frozenset({1}), "req.2": frozenset({2, 3})}
