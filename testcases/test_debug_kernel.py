"""The debug guest kernel (lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_SHIRQ, kmemleak) through every
path that takes and gives back interrupt lines: the fallback matrix's cells of the patched
guest, per-vq with two queue pairs, unbinding and binding the transport, and suspend/resume
(freeze and restore re-run find_vqs).

The kernel log scan after each case fails it on any lockdep, atomic-sleep or DEBUG_SHIRQ
report; kmemleak must find nothing. A long campaign: it runs with --hil-campaigns
(`hil qualify --release`); CI runs it once with few cycles.
"""

import pytest

from hil.labgrid import probes
from hil.measure import kmemleak, virtio

pytestmark = [pytest.mark.guest, pytest.mark.campaign, pytest.mark.lg_feature("multi-irq-vmm"),
              pytest.mark.needs_options("vmms", "guest_kernels")]

# Re-address the interface a re-probed virtio-net creates (the guest's init did it once).
READDRESS = (". /etc/hil/network; for d in /sys/class/net/eth*; do n=${d##*/}; "
             "ip addr add $GUEST_ADDR/24 dev $n 2>/dev/null; ip link set $n up; done")


def boot_debug(boot_guest, board_options, lines, pairs=1, vmm="patched"):
    guest = boot_guest(kernel=board_options["guest_kernels"]["debug"],
                       qemu=board_options["vmms"][vmm], irq_lines=lines, queues=pairs,
                       cpus=pairs)
    guest.check("test -e /sys/kernel/debug/kmemleak")
    guest.check(kmemleak.CLEAR)
    return guest


def net_device(guest):
    (net,) = [d for d in virtio.parse_list(guest.check(virtio.LIST_COMMAND)) if d.kind == "net"]
    return net


def assert_no_leaks(guest, measurements):
    leaks = kmemleak.leaks(guest.check(kmemleak.SCAN, timeout=180))
    measurements.record("kmemleak.suspected_leaks", len(leaks), "count")
    assert not leaks, "kmemleak:\n" + "\n".join(leaks[:5])


# The matrix's cells for the patched guest (the debug kernel is the patched one), and per-vq
# with two queue pairs, where the most lines are requested and freed.
CELLS = [pytest.param(c.vmm, c.lines, c.pairs, c.mode, id=c.id)
         for c in virtio.FALLBACK_MATRIX if c.guest == "patched"]
CELLS.append(pytest.param("patched", 5, 2, "per-vq", id="guest-patched-vmm-patched-lines-5-pairs-2"))


@pytest.mark.parametrize(("vmm", "lines", "pairs", "mode"), CELLS)
def test_each_mode_runs_clean_under_lockdep_and_kmemleak(boot_guest, board_options, vmm, lines,
                                                         pairs, mode, measurements):
    guest = boot_debug(boot_guest, board_options, lines, pairs, vmm)
    net = net_device(guest)
    assert net.irq_mode == mode
    rows = probes.guest_interrupts(guest)
    assert set(virtio.lines_of(rows, net.name)) == \
        virtio.expected_line_names(mode, virtio.net_vq_names(pairs))
    probes.ping_board(guest)
    assert_no_leaks(guest, measurements)


def test_unbinding_and_binding_the_transport_gives_back_and_retakes_every_line(
        boot_guest, board_options, measurements, request):
    cycles = request.config.getoption("unbind_cycles")
    guest = boot_debug(boot_guest, board_options, lines=3)
    net = net_device(guest)
    device = guest.check(f"basename $(readlink -f /sys/bus/virtio/devices/{net.name}/..)")
    driver = "/sys/bus/platform/drivers/virtio-mmio"
    before = len(probes.kernel_lines(guest, "using 3 interrupt lines (per-vq)"))
    guest.check(f"for i in $(seq {cycles}); do echo {device} > {driver}/unbind && "
                f"echo {device} > {driver}/bind || exit 1; done", timeout=60 + 10 * cycles)
    after = len(probes.kernel_lines(guest, "using 3 interrupt lines (per-vq)"))
    measurements.record("debug.unbind_bind.cycles", cycles, "count")
    assert after - before == cycles, f"{after - before} per-vq probes for {cycles} binds"
    assert net_device(guest).irq_mode == "per-vq"
    guest.check(READDRESS)
    probes.ping_board(guest)
    assert_no_leaks(guest, measurements)


def test_suspend_and_resume_restore_the_lines(boot_guest, board_options, measurements,
                                              request):
    cycles = request.config.getoption("pm_test_cycles")
    guest = boot_debug(boot_guest, board_options, lines=3)
    # pm_test stops after the devices' suspend callbacks, waits pm_test_delay, and resumes.
    guest.check("echo 0 > /sys/module/suspend/parameters/pm_test_delay && "
                "echo devices > /sys/power/pm_test")
    guest.check(f"for i in $(seq {cycles}); do echo freeze > /sys/power/state || exit 1; done",
                timeout=60 + 10 * cycles)
    resumed = len(probes.kernel_lines(guest, "PM: suspend exit"))
    measurements.record("debug.pm_test.cycles", cycles, "count")
    assert resumed >= cycles, f"{resumed} resumes for {cycles} suspends"
    assert net_device(guest).irq_mode == "per-vq"
    probes.ping_board(guest)
    assert_no_leaks(guest, measurements)
