"""The GICv3 board (places/virtual-gicv3.yaml: gic-version=3, no ITS) once, short: KVM on it
runs vgic-v3, and the queue lines reach its guest through irqfds, none injected by the VMM.
The whole suite runs on it with `hil qualify --lg-env places/virtual-gicv3.yaml`."""

import json

from .conftest import REPO, run_pytest


def test_the_gicv3_board_runs_vgic_v3_and_its_queue_lines_bypass_userspace(built_images,
                                                                           tmp_path):
    results = tmp_path / "r"
    p = run_pytest(REPO / "places" / "virtual-gicv3.yaml", results, "testcases/test_board.py",
                   "testcases/test_guest.py::"
                   "test_guest_boots_nested_under_kvm_with_the_boards_in_kernel_gic",
                   "testcases/test_multi_irq.py::"
                   "test_queue_lines_with_vhost_net_bypass_userspace_through_irqfd",
                   timeout=900)
    assert p.returncode == 0, p.stdout[-5000:]
    verdict = json.loads((results / "verdict.json").read_text())
    assert verdict["passed"] == 5, verdict
    rows = {r["name"]: r["value"] for r in map(json.loads, (results / "measurements.jsonl")
                                               .read_text().splitlines())}
    assert rows["irqfd.per-vq.userspace_injections"] == 0
    assert rows["irqfd.per-vq.kernel_injections"] > 0
