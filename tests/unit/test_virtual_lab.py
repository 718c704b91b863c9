"""The virtual lab's plan: what each board runs, what the exporter publishes, what keeps the lab
from starting, and how a client's power switch driver gets its credentials."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hil.errors import InfrastructureError
from hil.labgrid.driver.powerswitch import with_credentials
from hil.virtual_lab import supervisor as virtual_lab
from hil.virtual_lab.supervisor import LabPlan, LabState

PLAN = LabPlan(Path("/tmp/hil-lab"), boards=2, address="192.0.2.7", coordinator_port=20408,
               sshd_port=2222)


def test_each_board_gets_its_outlet_its_cables_and_its_tftp_directory() -> None:
    boards = PLAN.all_boards()
    assert [(b.name, b.outlet) for b in boards] == [("virtual-0", 1), ("virtual-1", 2)]
    assert len({b.console_socket for b in boards} | {b.guest_socket for b in boards}) == 4
    assert len({b.tftp_dir for b in boards}) == 2
    assert virtual_lab.cable_names(PLAN) == ["virtual-0-console", "virtual-0-guest",
                                             "virtual-1-console", "virtual-1-guest"]


def test_the_boards_take_the_gics_in_turn_and_are_tagged_with_theirs() -> None:
    assert [b.gic for b in PLAN.all_boards()] == [2, 3]
    assert PLAN.board(0).tags == {"board": "virtual", "gic": "v2", "kvm": "yes"}
    assert PLAN.board(1).tags == {"board": "virtual", "gic": "v3", "kvm": "yes"}
    assert "virt,gic-version=2,virtualization=on" in PLAN.qemu_command(PLAN.board(0))
    assert "virt,gic-version=3,its=off,virtualization=on" in PLAN.qemu_command(PLAN.board(1))
    three_v2 = LabPlan(Path("/tmp/hil-lab"), 3, "192.0.2.7", 20408, 2222, gics=(2,))
    assert [b.gic for b in three_v2.all_boards()] == [2, 2, 2]
    assert virtual_lab.parse_gics("v2,v3,v3") == (2, 3, 3)
    with pytest.raises(ValueError, match="write the boards' GICs as v2 or v3"):
        virtual_lab.parse_gics("v2,gicv4")


def test_a_board_boots_u_boot_with_its_consoles_on_its_cables() -> None:
    b = PLAN.board(1)
    cmd = PLAN.qemu_command(b)
    assert cmd[cmd.index("-bios") + 1] == virtual_lab.UBOOT
    chardevs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-chardev"]
    assert f"socket,id=console,path={b.console_socket}" in chardevs
    assert f"socket,id=guestcon,path={b.guest_socket}" in chardevs
    # The board never listens on a port of this host: two run at once.
    assert not any("port=" in c or "server=on" in c for c in chardevs)


def test_the_exporter_publishes_each_board_as_a_group_without_credentials() -> None:
    devices = {n: f"/dev/pts/{i}" for i, n in enumerate(virtual_lab.cable_names(PLAN))}
    config = PLAN.exporter_config(devices, relay_port=8080)
    assert set(config) == {"virtual-0", "virtual-1"}
    g = config["virtual-1"]
    assert g["board-console"] == {"cls": "RawSerialPort", "port": "/dev/pts/2", "speed": 115200}
    assert g["guest-console"]["port"] == "/dev/pts/3"
    # The lab's power relay, on the lab's address, in labgrid's `rest` model.
    assert g["power"] == {"cls": "NetworkPowerPort", "model": "rest",
                          "host": "http://192.0.2.7:8080/outlet/{index}", "index": 2}
    assert g["tftp"]["internal"] == g["tftp"]["external"] == "/tmp/hil-lab/tftp/virtual-1/"
    text = yaml.safe_dump(config)
    assert "@" not in text
    # labgrid renders the file with Jinja2 first: a line starting with "#" is a statement.
    assert not any(line.lstrip().startswith("#") for line in text.splitlines())


def test_with_the_lab_host_vm_this_host_exports_only_power_and_tftp() -> None:
    devices = {n: f"/dev/pts/{i}" for i, n in enumerate(virtual_lab.cable_names(PLAN))}
    vm_plan = LabPlan(PLAN.directory, 2, PLAN.address, 20408, 2222, lab_host="vm")
    config = vm_plan.exporter_config(devices, relay_port=8080)
    assert {k for k in config["virtual-0"] if k != "location"} == {"power", "tftp"}


def test_the_lab_host_vm_takes_two_boards_and_a_known_lab_host() -> None:
    assert virtual_lab.preflight(2, euid=0, lab_host="vm") == \
        virtual_lab.preflight(2, euid=0, lab_host="local")
    assert "the lab-host VM has 4 USB ports: at most 2 boards with --lab-host vm" in \
        virtual_lab.preflight(3, euid=0, lab_host="vm")
    assert "--lab-host must be one of local, vm, got 'pi'" in \
        virtual_lab.preflight(2, euid=0, lab_host="pi")


def test_preflight_names_every_missing_part_and_what_installs_it(monkeypatch) -> None:
    monkeypatch.setattr(virtual_lab, "TFTPD", "/nonexistent/in.tftpd")
    monkeypatch.setattr(virtual_lab, "SER2NET", "/nonexistent/ser2net")
    problems = virtual_lab.preflight(0, euid=1000)
    text = "\n".join(problems)
    assert "--boards must be at least 1, got 0" in text
    assert "needs root" in text
    assert "/nonexistent/in.tftpd missing: run `hil firmware build` (it installs tftpd-hpa)" in text
    assert "(it installs ser2net)" in text


def _supervisor_lookalike(directory: Path) -> subprocess.Popen[bytes]:
    """A process whose command line is that of `directory`'s supervisor (once up() can see
    it so: on a loaded host this once took longer than the test waited, and up() went on)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "hil.virtual_lab.supervisor", "supervise", str(directory)])
    deadline = time.monotonic() + 10
    while not virtual_lab._is_supervisor(proc.pid, directory):
        assert time.monotonic() < deadline, "the lookalike never showed its command line"
        time.sleep(0.05)
    return proc


def _a_lab_dir(directory: Path) -> Path:
    virtual_lab.claim_lab_dir(directory)
    return directory


def test_a_second_lab_in_the_same_directory_is_refused_before_anything_starts(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(virtual_lab, "preflight", lambda boards, **kw: [])

    def started(directory: Path) -> None:
        # Past the refusal up() would start a real lab, which outlives the test and holds
        # the boards' network for every later lab on the host.
        raise AssertionError(f"up() went on to claim {directory} and start a lab")

    lab = _a_lab_dir(tmp_path / "lab")
    monkeypatch.setattr(virtual_lab, "claim_lab_dir", started)
    sup = _supervisor_lookalike(lab)
    try:
        LabState("ready", pid=sup.pid).write(lab)
        with pytest.raises(virtual_lab.ConfigError, match="a lab already runs from"):
            virtual_lab.up(lab, 2)
    finally:
        sup.kill()
        sup.wait()
    assert (lab / "lab.json").exists()


def test_down_refuses_a_directory_that_is_not_a_lab_and_deletes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_text("precious")
    with pytest.raises(virtual_lab.ConfigError, match=r"holds no \.hil-lab marker.*not touched"):
        virtual_lab.down(folder)
    assert (folder / "holiday.jpg").read_text() == "precious"


def test_up_refuses_a_directory_that_is_not_a_lab_before_anything_starts(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(virtual_lab, "preflight", lambda boards, **kw: [])
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(virtual_lab.ConfigError, match="not touched"):
        virtual_lab.up(folder, 2)
    assert (folder / "notes.txt").read_text() == "keep"


def test_a_lab_directory_is_private_and_marked(tmp_path: Path) -> None:
    lab = _a_lab_dir(tmp_path / "deep" / "lab")
    assert lab.stat().st_mode & 0o777 == 0o700
    assert (lab / virtual_lab.MARKER).is_file()
    assert virtual_lab.lab_dir_problem(lab) is None
    # A lab directory another user could write into is not trusted, nor one they own.
    lab.chmod(0o777)
    assert "mode 777" in str(virtual_lab.lab_dir_problem(lab))
    lab.chmod(0o700)
    assert "belongs to uid" in str(virtual_lab.lab_dir_problem(lab, euid=12345))
    link = tmp_path / "link"
    link.symlink_to(lab)
    assert "symbolic link" in str(virtual_lab.lab_dir_problem(link))
    # An empty directory of this user's may be taken; a lab's own is emptied and taken again.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    virtual_lab.claim_lab_dir(empty)
    (lab / "lab.json").write_text("{}")
    virtual_lab.claim_lab_dir(lab)
    assert sorted(p.name for p in lab.iterdir()) == [virtual_lab.MARKER]


def test_a_planted_lab_json_is_neither_read_nor_its_pid_signalled(tmp_path: Path) -> None:
    planted = tmp_path / "hil-lab"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    (planted / virtual_lab.MARKER).write_text("")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        LabState("ready", pid=victim.pid, coordinator="$(touch /tmp/pwned)").write(planted)
        assert LabState.read(planted) is None
        with pytest.raises(virtual_lab.ConfigError, match="mode 777"):
            virtual_lab.down(planted)
        # In a lab's own directory, a pid that is not its supervisor is not signalled either.
        lab = _a_lab_dir(tmp_path / "lab")
        LabState("ready", pid=victim.pid).write(lab)
        virtual_lab.down(lab, out=lambda _: None)
        assert victim.poll() is None
        assert not lab.exists()
    finally:
        victim.kill()
        victim.wait()


def test_lab_env_quotes_what_it_prints(tmp_path: Path, capsys) -> None:
    from hil import cli

    lab = _a_lab_dir(tmp_path / "lab")
    LabState("ready", 42, coordinator="127.0.0.1:1; touch /tmp/pwned",
             places=["$(id)"]).write(lab)
    assert cli.main(["lab", "env", "--dir", str(lab)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "export LG_COORDINATOR='127.0.0.1:1; touch /tmp/pwned'"
    assert out[1] == "export LG_PLACE='$(id)'"


def test_a_supervisor_that_ended_is_gone_even_before_its_parent_reaps_it() -> None:
    # `down` waits for the supervisor to end; one started by a Python program that called
    # `up()` stays a zombie until that program waits for it.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while virtual_lab._pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not virtual_lab._pid_alive(proc.pid)
    assert Path(f"/proc/{proc.pid}").exists(), "not reaped yet: still a zombie"
    proc.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert virtual_lab._pid_alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_exports_name_the_coordinator_the_first_place_the_metrics_and_no_credentials() -> None:
    state = LabState("ready", 42, coordinator="127.0.0.1:1", places=["virtual-0", "virtual-1"],
                     credentials="/run/lab/power-credentials",
                     metrics="http://127.0.0.1:2/metrics")
    # The lab's power relay holds the switch's credentials: clients need none.
    assert state.exports() == {"LG_COORDINATOR": "127.0.0.1:1", "LG_PLACE": "virtual-0",
                               "HIL_LAB_METRICS": "http://127.0.0.1:2/metrics"}


def test_a_client_brings_its_own_switch_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("lab:s3cret-word\n")
    creds.chmod(0o600)
    env = {"HIL_POWER_CREDENTIALS": str(creds)}
    assert with_credentials("http://127.0.0.1:8080", env) == "http://lab:s3cret-word@127.0.0.1:8080"
    assert with_credentials("http://127.0.0.1:8080",
                            {"LG_POWER_USER": "u", "LG_POWER_PASSWORD": "p"}) \
        == "http://u:p@127.0.0.1:8080"
    # A URL that has its own keeps them; no credentials at all leaves the URL as it is.
    assert with_credentials("http://a:b@h:1", env) == "http://a:b@h:1"
    assert with_credentials("http://h:1", {}) == "http://h:1"


def test_unsafe_credential_files_are_refused_with_what_to_do(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("lab:s3cret-word\n")
    creds.chmod(0o644)
    with pytest.raises(InfrastructureError, match="chmod 600"):
        with_credentials("http://h:1", {"HIL_POWER_CREDENTIALS": str(creds)})
    with pytest.raises(InfrastructureError, match="No such file"):
        with_credentials("http://h:1", {"HIL_POWER_CREDENTIALS": str(tmp_path / "none")})


def test_the_ssh_drop_in_names_the_lab_host_vm_with_the_labs_key(tmp_path: Path,
                                                                 monkeypatch) -> None:
    from hil.virtual_lab import sshd

    monkeypatch.setattr(sshd, "DROPIN_DIR", tmp_path / "ssh_config.d")
    (tmp_path / "ssh_config.d").mkdir()
    server = sshd.LabSSHServer(tmp_path / "ssh", "192.0.2.7", 2222, tmp_path / "lab")
    server.directory.mkdir()
    (server.directory / "host_ed25519.pub").write_text("ssh-ed25519 AAAAC3Nz hil-lab\n")
    server.dropin.write_text(sshd.client_dropin(server.directory, "192.0.2.7", 2222, "root"))
    server.add_alias("hil-labhost-lab", "127.0.0.1", 40022, "root")
    dropin = server.dropin.read_text()
    block = dropin[dropin.index("Host hil-labhost-lab"):]
    assert "  HostName 127.0.0.1\n  Port 40022\n  User root\n" in block
    assert f"  IdentityFile {server.directory / 'id_ed25519'}\n" in block
    assert "StrictHostKeyChecking yes" in block
    # The VM serves the lab's host key: known by the forward's address and port.
    assert (server.directory / "known_hosts").read_text() == \
        "[127.0.0.1]:40022 ssh-ed25519 AAAAC3Nz hil-lab\n"


def test_a_restarted_switch_first_ends_the_board_qemus_its_predecessor_left(tmp_path) -> None:
    """What the supervisor does before it starts a killed power switch again: the boards'
    QEMUs of that lab (and nothing else) are ended, so no board runs twice."""
    lab = tmp_path / "lab"
    sleeper = "import time; time.sleep(60)"

    def fake(argv0: str, socket: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["bash", "-c", f'exec -a {argv0} {sys.executable} -c "{sleeper}" '
                                 f'-chardev socket,id=console,path={socket}'])

    board = fake(virtual_lab.QEMU, f"{lab}/cables/virtual-0-console.sock")
    other_lab = fake(virtual_lab.QEMU, f"{tmp_path}/other/cables/virtual-0-console.sock")
    not_qemu = fake("/usr/bin/socat", f"{lab}/cables/virtual-0-console.sock")
    try:
        deadline = time.monotonic() + 10
        while board.pid not in virtual_lab.board_pids(lab) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert virtual_lab.board_pids(lab) == [board.pid]
        assert virtual_lab.end_boards(lab) == 1
        assert board.wait(5) == -9
        assert other_lab.poll() is None and not_qemu.poll() is None
    finally:
        for p in (board, other_lab, not_qemu):
            p.kill()
            p.wait()


def test_two_labs_of_one_name_in_different_folders_share_no_ssh_file(tmp_path: Path) -> None:
    from hil.virtual_lab import sshd

    one, other = tmp_path / "a" / "lab", tmp_path / "b" / "lab"
    assert sshd.dropin_path(one) != sshd.dropin_path(other)
    assert sshd.authorized_keys_path(one) != sshd.authorized_keys_path(other)
    assert sshd.dropin_path(one) == sshd.dropin_path(tmp_path / "a" / ".." / "a" / "lab")
    assert sshd.dropin_path(one).name.startswith("hil-lab-lab-")


def _holding(lock: Path, directory: Path) -> subprocess.Popen[str]:
    """Another process that holds the host lock for `directory`, as a lab's supervisor does."""
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from hil.virtual_lab import hostlock; "
         "hostlock.HostLock(Path(sys.argv[1])).acquire(Path(sys.argv[2])); print('held', "
         "flush=True); time.sleep(60)", str(lock), str(directory)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_one_lab_per_host_and_a_killed_lab_leaves_no_lock(tmp_path: Path) -> None:
    from hil.virtual_lab import hostlock

    lock, first = tmp_path / "lab.lock", tmp_path / "first-lab"
    assert hostlock.holder(lock) is None
    proc = _holding(lock, first)
    try:
        assert hostlock.holder(lock) == hostlock.Holder(proc.pid, str(first))
        with pytest.raises(virtual_lab.ConfigError,
                           match=f"from {first} \\(pid {proc.pid}\\).*hil lab down --dir {first}"):
            hostlock.HostLock(lock).acquire(tmp_path / "second-lab", wait=0.3)
    finally:
        proc.kill()  # as SIGKILL ends a supervisor: no handler, no clean-up
        proc.wait()
    assert hostlock.holder(lock) is None
    second = hostlock.HostLock(lock)
    second.acquire(tmp_path / "second-lab")
    assert "second-lab" in hostlock.holder(lock).directory  # type: ignore[union-attr]
    second.release()
    assert hostlock.holder(lock) is None


def test_preflight_names_the_lab_that_holds_the_host(tmp_path: Path, monkeypatch) -> None:
    from hil.virtual_lab import hostlock

    monkeypatch.setattr(hostlock, "LOCK_PATH", tmp_path / "lab.lock")
    proc = _holding(tmp_path / "lab.lock", tmp_path / "theirs")
    try:
        problems = virtual_lab.preflight(2)
    finally:
        proc.kill()
        proc.wait()
    assert [p for p in problems if "another virtual lab" in p] == [
        f"another virtual lab runs on this host, from {tmp_path / 'theirs'} (pid {proc.pid}); "
        f"one host has one: `hil lab down --dir {tmp_path / 'theirs'}` first"]


def test_the_ssh_drop_ins_of_killed_labs_go_and_this_labs_stay(tmp_path: Path,
                                                               monkeypatch) -> None:
    # A killed lab's `Host 127.0.0.1` block came first in ssh's reading, so every later lab's
    # ssh reached a dead port: CI's lab tests all failed at "ssh to the lab host not ready".
    from hil.virtual_lab import sshd

    monkeypatch.setattr(sshd, "DROPIN_DIR", tmp_path / "ssh" / "ssh_config.d")
    sshd.DROPIN_DIR.mkdir(parents=True)
    killed, mine = tmp_path / "killed" / "lab", tmp_path / "mine" / "lab"
    for lab in (killed, mine):
        sshd.dropin_path(lab).write_text(
            sshd.client_dropin(lab / "ssh", "127.0.0.1", 2222, "root"))
        sshd.authorized_keys_path(lab).write_text("ssh-ed25519 AAAA hil-lab\n")
    unrelated = sshd.DROPIN_DIR / "20-systemd-ssh-proxy.conf"
    unrelated.write_text("Host .host\n")

    assert sshd.remove_others(mine) == [str(killed)]
    assert sorted(p.name for p in sshd.DROPIN_DIR.iterdir()) == sorted(
        [sshd.dropin_path(mine).name, unrelated.name])
    assert not sshd.authorized_keys_path(killed).exists()
    assert sshd.authorized_keys_path(mine).exists()
