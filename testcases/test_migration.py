"""Migration of a running guest in per-vq mode, with iperf3 traffic on its queue lines.

The guest is saved to a file on the board while an iperf3 client in it sends to the board,
then loaded by a new VMM: with the same number of lines the guest goes on and so does its
TCP stream; a VMM with another number of lines, or without the patches, refuses the state
(the transport's subsection compares the line count, and an unpatched QEMU does not know the
subsection) instead of loading it and cross-wiring the transports.
"""

import json

import pytest

from hil.labgrid import probes, vmm
from hil.measure import iperf, virtio

pytestmark = [pytest.mark.guest, pytest.mark.lg_feature("multi-irq-vmm"),
              pytest.mark.needs_options("vmms")]

STATE = "/tmp/hil-guest.state"
SECONDS = 12  # of iperf3, in the guest's time (which stops while no VMM runs it)
VMM_GONE = f"! kill -0 $(cat {vmm.PIDFILE}) 2>/dev/null"


def monitor_says(text: str, command: str) -> str:
    return f"{vmm.monitor_script(command)} | grep -q {text!r}"


def net_mode(guest) -> str | None:
    (net,) = [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "net"]
    return net.irq_mode


def test_a_guest_migrated_with_traffic_resumes_on_the_same_lines_and_is_refused_elsewhere(
        boot_guest, board, vmm, board_options, measurements):
    vmms = board_options["vmms"]
    incoming = ("-incoming", f"file:{STATE}")
    guest = boot_guest(qemu=vmms["patched"], irq_lines=3)
    assert net_mode(guest) == "per-vq"
    board.check(iperf.server_command())
    guest.check(f"{iperf.client_command(probes.BOARD_ADDR, SECONDS)} >/tmp/iperf.json 2>&1 &")
    guest.check("sleep 3")
    try:
        vmm.monitor(f"migrate file:{STATE}")
        assert board.poll(monitor_says("completed", "info migrate"), timeout=120), \
            vmm.monitor("info migrate")
        measurements.record("migration.state_bytes", int(board.check(f"stat -c %s {STATE}")),
                            "byte")

        # Another line count: the subsection's VMSTATE_UINT32_EQUAL refuses the state.
        vmm.start(qemu=vmms["patched"], irq_lines=2, extra=incoming)
        assert board.poll(VMM_GONE, timeout=60), "a VMM with 2 lines loaded a 3-line guest"
        log = vmm.log()
        assert "virtio-mmio-irq-lines must be the same on source and destination" in log, log
        assert "load of migration failed" in log, log
        # Debian's QEMU does not know the subsection.
        vmm.start(qemu=vmms["stock"], irq_lines=1, extra=incoming)
        assert board.poll(VMM_GONE, timeout=60), "the unpatched VMM loaded a 3-line guest"
        log = vmm.log()
        assert "of device 'virtio-mmio@" in log and "load of migration failed" in log, log

        # The same line count: the guest goes on where it was, and so does its stream.
        vmm.start(qemu=vmms["patched"], irq_lines=3, extra=incoming)
        assert board.poll(monitor_says("running", "info status"), timeout=120), vmm.log()
        # Each command runs in its own shell: wait for the client by its process.
        assert guest.poll("! pidof iperf3", timeout=SECONDS + 60), "iperf3 never ended"
        result = json.loads(guest.read_compressed("/tmp/iperf.json"))
        per_second = [round(i["sum"]["bytes"]) for i in result["intervals"]]
        measurements.record("migration.iperf3_bytes_per_interval", per_second, "byte")
        assert len(per_second) >= SECONDS - 1 and all(per_second[-5:]), per_second
        assert net_mode(guest) == "per-vq"
        probes.ping_board(guest)
    finally:
        board.check(f"rm -f {STATE}")
        # The next case gets a guest booted afresh.
        vmm.stop()
