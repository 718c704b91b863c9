from hil import interrupts, virtio


def test_device_list_with_and_without_irq_mode():
    found = virtio.parse_list("virtio0 0x0001 single\nvirtio1 0x0002 per-vq\nvirtio2 0x0004 -\n")
    assert [(d.name, d.kind, d.irq_mode) for d in found] == [
        ("virtio0", "net", "single"), ("virtio1", "blk", "per-vq"), ("virtio2", "rng", None)]


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
