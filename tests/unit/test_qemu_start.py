"""A virtual board whose QEMU fails at start ends power-on with a message, never a wait: labgrid's
QEMUDriver waits for QEMU's console connection with no timeout."""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
from labgrid import Environment

from hil import ports
from hil.errors import InfrastructureError
from hil.labgrid.qemu_start import StartWatch, console_socket

LABGRIDS_CONSOLE = ["-S", "-qmp", "stdio", "-chardev", "socket,id=serialsocket,path=/tmp/x/serialrw",
                    "-serial", "chardev:serialsocket"]


def test_the_console_socket_is_the_chardev_behind_serial() -> None:
    args = ["qemu", "-chardev", "socket,id=guestcon,host=127.0.0.1,port=45871,server=on",
            *LABGRIDS_CONSOLE]
    assert console_socket(args) == "/tmp/x/serialrw"
    assert console_socket(["qemu", "-chardev", "socket,id=a,path=/p", "-serial", "stdio"]) is None
    assert console_socket(["qemu"]) is None


class Exited:
    """A QEMU that has exited, as subprocess.Popen shows it."""

    def __init__(self, path: Path):
        self.args = ["qemu", "-chardev", f"socket,id=serialsocket,path={path}",
                     "-serial", "chardev:serialsocket"]

    def poll(self) -> int:
        return 1

    def kill(self) -> None:
        pass


def listening(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    s.settimeout(0)
    return s


def test_a_qemu_that_exits_before_it_connects_ends_labgrids_wait(tmp_path: Path) -> None:
    with listening(tmp_path / "serialrw") as s:
        watch = StartWatch(lambda: Exited(tmp_path / "serialrw"), timeout=60, grace=0.1)  # type: ignore[arg-type,return-value]
        watch.start()
        watch.join(5)
        assert not watch.is_alive()
        conn, _ = s.accept()
        conn.close()


def test_a_start_labgrid_ended_itself_is_left_alone(tmp_path: Path) -> None:
    """Its connection would wait in the backlog for the next start to take it as QEMU's."""
    with listening(tmp_path / "serialrw") as s:
        watch = StartWatch(lambda: Exited(tmp_path / "serialrw"), timeout=60, grace=5)  # type: ignore[arg-type,return-value]
        watch.start()
        time.sleep(0.3)
        watch.stop()
        with pytest.raises(BlockingIOError):
            s.accept()


def fake_qemu(tmp_path: Path, then: str) -> Path:
    """A QEMU that answers labgrid's version query, then does `then` (Python) with its argv."""
    script = tmp_path / "qemu"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable} -S
        import socket, sys, time
        if "-version" in sys.argv:
            print("QEMU emulator version 10.0.2")
            sys.exit(0)
        path = sys.argv[sys.argv.index("-chardev", sys.argv.index("-qmp")) + 1].split("path=")[1]
        """) + then)
    script.chmod(0o755)
    return script


def board(tmp_path: Path, qemu: Path, **options: object) -> object:
    lines = "".join(f"        {k}: {v}\n" for k, v in options.items())
    (tmp_path / "env.yaml").write_text(textwrap.dedent(f"""\
        imports: [hil.labgrid]
        tools: {{qemu: {qemu}}}
        targets:
          main:
            drivers:
              VirtualBoardDriver:
                qemu_bin: qemu
                machine: virt
                cpu: cortex-a57
                memory: 1G
                extra_args: ''
                nic: none
        """) + lines)
    target = Environment(str(tmp_path / "env.yaml")).get_target("main")
    return target.get_driver("VirtualBoardDriver")


@pytest.mark.parametrize(("then", "options", "says"), [
    # A chardev's port taken, before QEMU connects its console.
    ("print('qemu: Failed to find an available port', file=sys.stderr); sys.exit(1)\n", {},
     r"the board's QEMU exited at start \(status 1\)"),
    # A bad -device: QEMU connects its console first, then exits.
    ("socket.socket(socket.AF_UNIX).connect(path); sys.exit(1)\n", {},
     r"the board's QEMU exited at start \(status 1\)"),
    ("time.sleep(60)\n", {"start_timeout": 1},
     r"the board's QEMU did not open its serial console within 1 s and was stopped"),
])
def test_a_qemu_that_fails_at_start_ends_power_on_with_a_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str, options: dict[str, object], says: str
) -> None:
    driver = board(tmp_path, fake_qemu(tmp_path, then), **options)
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match=says):
        driver.on()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 10
    assert not driver.status  # type: ignore[attr-defined]


def test_a_board_whose_start_failed_gives_its_ports_back(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "CLAIMS", tmp_path / "claims")
    port = ports.free_port()
    driver = board(tmp_path, fake_qemu(tmp_path, "sys.exit(1)\n"), tcp_ports=f"[{port}]")
    with pytest.raises(InfrastructureError, match="exited at start"):
        driver.on()  # type: ignore[attr-defined]
    ports.Claim(port, "the next board").release()


def test_a_second_board_on_the_same_ports_is_refused_before_its_qemu_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions of one env file: both may find the port free before either QEMU binds it."""
    monkeypatch.setattr(ports, "CLAIMS", tmp_path / "claims")
    port = ports.free_port()
    started = tmp_path / "started"
    driver = board(tmp_path, fake_qemu(tmp_path, f"open({str(started)!r}, 'w')\n"),
                   tcp_ports=f"[{port}]")
    first = ports.Claim(port, "a virtual board's console")
    with pytest.raises(InfrastructureError, match=rf"port {port} is claimed by a virtual board's "
                                                  r"console \(pid \d+\) on this host"):
        driver.on()  # type: ignore[attr-defined]
    assert not started.exists()
    first.release()
