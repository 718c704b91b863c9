import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hil.errors import ConfigError
from hil.labgrid import vmm


def test_default_guest_command_uses_kvm_vhost_tap_and_the_board_serial():
    cmd = vmm.command(vmm.GuestConfig())
    assert cmd[:6] == ["/usr/bin/qemu-system-aarch64", "-enable-kvm", "-M", "virt,gic-version=2",
                       "-cpu", "host"]
    assert "tap,id=n0,ifname=tap0,script=/etc/hil/ifup,downscript=no,vhost=on" in cmd
    assert "virtio-net-device,netdev=n0" in cmd


def test_the_guests_shell_runs_on_a_virtio_console_sharing_the_serial_with_its_pl011():
    cmd = vmm.command(vmm.GuestConfig())
    assert cmd[cmd.index("-chardev") + 1] == "serial,id=guestcon,mux=on,path=/dev/hvc0"
    assert cmd[cmd.index("-serial") + 1] == "chardev:guestcon"
    # The virtio console attaches after the PL011: the multiplexer gives it the input.
    devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    assert devices[:2] == ["virtio-serial-pci,max_ports=1", "virtconsole,chardev=guestcon"]
    assert cmd[cmd.index("-append") + 1] == "earlycon console=hvc0 hil.role=guest quiet"


def test_a_uart_console_puts_the_guests_shell_on_its_pl011_alone():
    cmd = vmm.command(vmm.GuestConfig(console="uart", serial="tcp::45871,server=on,wait=off"))
    assert cmd[cmd.index("-serial") + 1] == "tcp::45871,server=on,wait=off"
    assert "-chardev" not in cmd and "virtio-serial-pci" not in cmd
    assert cmd[cmd.index("-append") + 1] == "console=ttyAMA0 hil.role=guest quiet"


def test_an_append_naming_its_own_console_is_left_as_it_is():
    cfg = vmm.GuestConfig(append="console=ttyAMA0 rdinit=/bin/sh")
    assert vmm.command(cfg)[vmm.command(cfg).index("-append") + 1] == cfg.append


@pytest.mark.parametrize(("serial", "chardev"), [
    ("/dev/ttyS1", "serial,id=guestcon,mux=on,path=/dev/ttyS1"),
    ("tcp::45871,server=on,wait=off",
     "socket,id=guestcon,mux=on,host=,port=45871,server=on,wait=off"),
    ("tcp:127.0.0.1:4000", "socket,id=guestcon,mux=on,host=127.0.0.1,port=4000"),
    ("unix:/run/g.sock,server=on", "socket,id=guestcon,mux=on,path=/run/g.sock,server=on"),
    ("file:/tmp/guest.log", "file,id=guestcon,mux=on,path=/tmp/guest.log"),
])
def test_each_serial_a_board_declares_becomes_the_same_chardev(serial, chardev):
    assert vmm.serial_problems(serial) == []
    assert vmm.chardev(serial) == chardev


@pytest.mark.parametrize("serial", ["stdio", "tcp:45871", "/dev/ttyS1,x", "", 5])
def test_a_serial_qemu_would_read_otherwise_is_refused_with_the_forms_to_write(serial):
    (problem,) = vmm.serial_problems(serial)
    assert "/dev/PATH, tcp:[HOST]:PORT" in problem
    if isinstance(serial, str) and serial:
        with pytest.raises(ConfigError, match="write where the guest's console goes"):
            vmm.command(vmm.GuestConfig(serial=serial))


def test_lines_and_pci_options():
    cfg = vmm.GuestConfig(irq_lines=3, net_device="virtio-net-pci", net_options={"romfile": ""},
                          vhost=False)
    cmd = vmm.command(cfg)
    assert "virt,gic-version=2,virtio-mmio-irq-lines=3" in cmd
    assert "virtio-net-pci,netdev=n0,romfile=" in cmd
    assert any("vhost=off" in a for a in cmd)


def test_multiqueue_needs_a_multiqueue_tap_and_mq_on():
    cmd = vmm.command(vmm.GuestConfig(queues=2))
    assert any(a.endswith(",vhost=on,queues=2") for a in cmd)
    assert "virtio-net-device,netdev=n0,mq=on" in cmd


def test_start_script_backgrounds_and_records_the_pid():
    line = vmm.start_script(vmm.GuestConfig(append="console=ttyAMA0 quiet"))
    assert line.startswith("setsid /usr/bin/qemu-system-aarch64 ")
    assert "'console=ttyAMA0 quiet'" in line and line.endswith(f"echo $! >{vmm.PIDFILE}")


def _started_in_background(script: str, pidfile) -> int:
    # Started like the VMM: detached (setsid) and reparented, so nothing here reaps it early.
    subprocess.run(["sh", "-c", f"setsid sh -c {script!r} </dev/null >/dev/null 2>&1 & "
                    f"echo $! > {pidfile}"], check=True)
    return int(pidfile.read_text())


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_stopping_a_vmm_that_ignores_sigterm_escalates_to_sigkill(tmp_path):
    pidfile = tmp_path / "vmm.pid"
    pid = _started_in_background("trap '' TERM; while :; do sleep 0.1; done", pidfile)
    t0 = time.monotonic()
    p = subprocess.run(["sh", "-c", vmm.stop_script(grace_s=0.5, pidfile=str(pidfile))],
                       capture_output=True, text=True, timeout=30)
    assert not _running(pid), "the VMM survived stop_script"
    assert "SIGKILL" in p.stderr and not pidfile.exists()
    assert time.monotonic() - t0 < 10


def test_a_vmm_that_obeys_sigterm_is_not_killed(tmp_path):
    pidfile = tmp_path / "vmm.pid"
    pid = _started_in_background("while :; do sleep 0.1; done", pidfile)
    p = subprocess.run(["sh", "-c", vmm.stop_script(grace_s=5, pidfile=str(pidfile))],
                       capture_output=True, text=True, timeout=30)
    assert not _running(pid) and "SIGKILL" not in p.stderr


def test_pinning_puts_vcpu_threads_on_one_board_cpu_and_the_rest_on_another():
    script = vmm.pin_script(vcpus=1, others=0)
    assert "'CPU '*) m=2;; *) m=1;;" in script and "taskset -p $m" in script
    assert "|| exit 1" in script  # a thread that cannot be pinned fails the run


def test_the_vmms_threads_are_listed_with_their_allowed_cpus(tmp_path):
    """After a run, the threads QEMU started since pinning (its I/O workers) show up too."""
    pidfile = tmp_path / "vmm.pid"
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start()"
    child = subprocess.Popen([sys.executable, "-c", code])
    pidfile.write_text(str(child.pid))
    try:
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{child.pid}/task")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        out = subprocess.run(["sh", "-c", vmm.threads_script(str(pidfile))],
                             capture_output=True, text=True, check=True).stdout
        status = Path(f"/proc/{child.pid}/status").read_text()
    finally:
        child.kill()
        child.wait()
    (cpus,) = [line.split()[1] for line in status.splitlines()
               if line.startswith("Cpus_allowed_list")]
    lines = [line.split() for line in out.splitlines()]
    assert len(lines) == 2 and lines[0][0] == str(child.pid)
    assert [line[2] for line in lines] == [cpus, cpus]


def test_a_pinning_option_names_cpus_the_board_has():
    assert vmm.pin_problems(None, 2) == []
    assert vmm.pin_problems({"vcpus": 1, "others": 0}, 2) == []
    assert vmm.pin_problems({"vcpus": 2, "others": 0}, 2) == [
        "pin_vmm vcpus: 2 is no CPU of this board (0..1)"]
    assert vmm.pin_problems({"vcpus": 1}, 2) == [
        "pin_vmm {'vcpus': 1}: write {vcpus: CPU or [CPU, ...], others: CPU} "
        "(board CPU numbers)"]
    assert vmm.pin_problems({"vcpus": [0, 1, 2], "others": 3}, 4) == []
    assert vmm.pin_problems({"vcpus": [0, 4], "others": 3}, 4) == [
        "pin_vmm vcpus: 4 is no CPU of this board (0..3)"]
    assert vmm.pinned_vcpus({"vcpus": [0, 1, 2], "others": 3}) == 3
    assert vmm.pinned_vcpus({"vcpus": 0, "others": 1}) is None


def test_pinning_vcpus_one_by_one_gives_each_its_cpu_and_fails_on_one_left_over():
    script = vmm.pin_script(vcpus=[2, 3], others=0)
    assert "'CPU 0/KVM') m=4;; 'CPU 1/KVM') m=8;;" in script
    # A third vCPU has no CPU in the list: the run fails rather than leaving it anywhere.
    assert "'CPU '*) echo \"no board CPU for" in script and "exit 1;; *) m=1;;" in script


def test_the_guests_gic_follows_the_boards_declared_gic(tmp_path):
    from labgrid import Environment

    import hil.labgrid  # noqa: F401
    from tests.unit import fake_lab

    for declared, machine in ((None, "virt,gic-version=2"), (3, "virt,gic-version=3,its=off")):
        options = {"board_cpus": 2, **({"gic_version": declared} if declared else {})}
        env = Environment(str(fake_lab.env_file(tmp_path, options=options)))
        driver = env.get_target("main").get_driver("GuestVMMDriver", activate=False)
        assert driver.config.machine == machine
        assert vmm.command(driver.config.with_changes(irq_lines=3))[3] == \
            machine + ",virtio-mmio-irq-lines=3"


@pytest.mark.parametrize("value", [1, 4, "3", True, 3.0])
def test_a_gic_version_the_lab_cannot_run_says_what_to_write(value):
    (problem,) = vmm.gic_problems(value)
    assert "write one of 2, 3" in problem and repr(value) in problem
    assert vmm.gic_problems(2) == vmm.gic_problems(3) == vmm.gic_problems(None) == []


def test_a_lab_place_tagged_with_its_gic_needs_no_declaration():
    assert vmm.board_gic(None, {}) == 2
    assert vmm.board_gic(None, {"gic": "v3", "board": "virtual"}) == 3
    assert vmm.board_gic(3, {}) == 3
    assert vmm.board_gic(3, {"gic": "v3"}) == 3


def test_a_declaration_that_contradicts_the_places_tag_is_refused():
    with pytest.raises(ConfigError, match=r"declares gic_version: 2 but its place is tagged "
                                          r"gic=v3: use an environment for that board"):
        vmm.board_gic(2, {"gic": "v3"})
    with pytest.raises(ConfigError, match=r"tag gic=gicv3 names no GIC hil knows: the lab must "
                                          r"tag it v2 or v3"):
        vmm.board_gic(None, {"gic": "gicv3"})
    with pytest.raises(ConfigError, match=r"gic_version '3': write one of 2, 3"):
        vmm.board_gic("3", {})


def test_the_gicv3_board_is_the_virtual_board_with_a_gicv3_and_no_its():
    from hil.preflight import envfile

    places = Path(__file__).resolve().parents[2] / "places"
    plain = yaml.safe_load((places / "virtual.yaml").read_text())
    v3 = yaml.safe_load((places / "virtual-gicv3.yaml").read_text())
    envfile.check(places / "virtual-gicv3.yaml")
    assert v3["targets"]["main"]["options"].pop("gic_version") == 3
    (board,) = [d["VirtualBoardDriver"] for d in v3["targets"]["main"]["drivers"]
                if "VirtualBoardDriver" in d]
    assert board["machine"] == "virt,gic-version=3,its=off,virtualization=on"
    board["machine"] = "virt,gic-version=2,virtualization=on"
    assert v3 == plain


class LocalShell:
    """This host's /bin/sh in a board shell's place: the driver's commands run for real."""

    def run(self, cmd, timeout=None):
        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=30)
        return p.stdout.splitlines(), [], p.returncode


def test_a_guest_file_missing_on_the_board_is_named_alone_before_anything_starts(tmp_path):
    from labgrid import Environment

    import hil.labgrid  # noqa: F401
    from hil.errors import ArtifactMissing
    from tests.unit import fake_lab

    env = Environment(str(fake_lab.env_file(tmp_path)))
    driver = env.get_target("main").get_driver("GuestVMMDriver")
    driver.shell = LocalShell()
    kernel = tmp_path / "Image"
    kernel.write_text("")
    with pytest.raises(ArtifactMissing) as e:
        driver.start(qemu="/bin/sh", kernel=str(kernel), initrd=str(tmp_path / "no initrd"))
    assert str(e.value).startswith(f"board lacks {tmp_path / 'no initrd'}: ")
    assert driver.running is None
