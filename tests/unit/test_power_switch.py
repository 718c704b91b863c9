"""The power switch as a process, driven by labgrid's own NetworkPowerDriver.

Outlets run Python one-liners that write their pid, so the test sees the process start and
die; one ignores SIGTERM and must be killed after the grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labgrid import Environment

from hil.errors import InfrastructureError
from hil.labgrid.driver.powerswitch import redact

CREDS = {"LG_POWER_USER": "hil", "LG_POWER_PASSWORD": "t0p-s3cret"}
GRACE = 0.5
RUNNER = "import os,sys,time; open(sys.argv[1],'w').write(str(os.getpid())); time.sleep(1000)"
STUBBORN = ("import os,signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open(sys.argv[1],'w').write(str(os.getpid())); time.sleep(1000)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: the switch reaps its children, but not instantly.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def wait_for(cond, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.01)
    raise AssertionError(f"{cond} not met within {timeout} s")


def pid_of(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text()))


@pytest.fixture
def switch(tmp_path, monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    ready = tmp_path / "port"
    cmd = [sys.executable, "-m", "hil.virtual_lab.power.switch", "--grace", str(GRACE),
           "--outlet", f"1={sys.executable} -c \"{RUNNER}\" {tmp_path / 'pid1'}",
           "--outlet", f"2={sys.executable} -c \"{STUBBORN}\" {tmp_path / 'pid2'}",
           "--port", "0", "--ready-file", str(ready)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    assert int(ready.read_text()) == port
    yield port, tmp_path
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert CREDS["LG_POWER_PASSWORD"] not in err


def power(tmp_path: Path, port: int | str, index: int, driver: str = "NetworkPowerDriver",
          **attrs: object):
    """labgrid's own client, the way a place names the switch: credentials via !template."""
    env_file = tmp_path / f"env-{index}.yaml"
    extra = "".join(f"\n        {k}: {v}" for k, v in attrs.items())
    env_file.write_text(f"""
imports: [hil.labgrid]
targets:
  main:
    resources:
      NetworkPowerPort:
        model: digitalloggers_restapi
        host: !template 'http://$LG_POWER_USER:$LG_POWER_PASSWORD@127.0.0.1:{port}'
        index: {index}
    drivers:
      {driver}:
        delay: 0.1{extra}
""")
    return Environment(str(env_file)).get_target("main").get_driver(driver)


def test_labgrid_powers_an_outlet_on_off_and_cycles_it(switch):
    port, tmp = switch
    p = power(tmp, port, 1)
    assert p.get() is False
    p.on()
    pid = pid_of(tmp / "pid1")
    assert alive(pid) and p.get() is True
    p.on()  # on again: the relay is already closed, nothing restarts
    assert p.get() is True and (tmp / "pid1").read_text() == str(pid)

    (tmp / "pid1").unlink()
    p.cycle()
    new = pid_of(tmp / "pid1")
    assert new != pid and not alive(pid) and alive(new)

    t = time.monotonic()
    p.off()
    assert time.monotonic() - t < GRACE  # it went on SIGTERM
    assert not alive(new) and p.get() is False
    p.off()  # off again: nothing to do


def test_an_outlet_that_ignores_sigterm_is_killed(switch):
    port, tmp = switch
    p = power(tmp, port, 2)
    p.on()
    pid = pid_of(tmp / "pid2")
    t = time.monotonic()
    p.off()
    assert time.monotonic() - t >= GRACE
    assert not alive(pid) and p.get() is False


def test_outlets_are_independent(switch):
    port, tmp = switch
    one, two = power(tmp, port, 1), power(tmp, port, 2)
    one.on()
    assert one.get() is True and two.get() is False
    one.off()


def test_stopping_the_switch_turns_its_outlets_off(tmp_path, monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    proc = subprocess.Popen([sys.executable, "-m", "hil.virtual_lab.power.switch",
                             "--outlet", f"1={sys.executable} -c \"{RUNNER}\" {tmp_path / 'pid'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    power(tmp_path, int(proc.stdout.readline()), 1).on()
    pid = pid_of(tmp_path / "pid")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not alive(pid)


def test_wrong_credentials_are_refused(switch, monkeypatch):
    port, tmp = switch
    monkeypatch.setenv("LG_POWER_PASSWORD", "guess")
    with pytest.raises(Exception, match="401"):
        power(tmp, port, 1).on()
    monkeypatch.setenv("LG_POWER_PASSWORD", CREDS["LG_POWER_PASSWORD"])
    assert power(tmp, port, 1).get() is False


def test_hils_driver_powers_the_switch_too(switch):
    port, tmp = switch
    p = power(tmp, port, 1, "PowerSwitchDriver", timeout=5)
    p.on()
    pid = pid_of(tmp / "pid1")
    assert p.get() is True
    p.off()
    assert not alive(pid) and p.get() is False


@pytest.fixture
def dead_port():
    """A port that accepts connections (the kernel does, from the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_switch_that_does_not_answer_gives_one_clear_error(tmp_path, monkeypatch, dead_port):
    monkeypatch.setenv("LG_POWER_USER", "hil")
    monkeypatch.setenv("LG_POWER_PASSWORD", "t0p-s3cret")
    p = power(tmp_path, dead_port, 3, "PowerSwitchDriver", timeout=0.5)
    t = time.monotonic()
    with pytest.raises(InfrastructureError) as e:
        p.on()
    assert time.monotonic() - t < 2
    assert str(e.value) == (f"power switch digitalloggers_restapi at http://127.0.0.1:{dead_port}, "
                            "outlet 3: on: no answer within 0.5 s")
    assert e.value.__cause__ is None


def test_a_switch_that_is_not_there_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LG_POWER_USER", "hil")
    monkeypatch.setenv("LG_POWER_PASSWORD", "t0p-s3cret")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = power(tmp_path, port, 1, "PowerSwitchDriver", timeout=5)
    with pytest.raises(InfrastructureError, match=r"outlet 1: get: nothing listens there "
                       r"\(connection refused\): is the switch running\?$") as e:
        p.get()
    assert "t0p-s3cret" not in str(e.value) and e.value.__cause__ is None


def test_wrong_credentials_say_so(switch, monkeypatch):
    port, tmp = switch
    monkeypatch.setenv("LG_POWER_PASSWORD", "guess")
    with pytest.raises(InfrastructureError, match=r"refused the credentials \(HTTP 401\)") as e:
        power(tmp, port, 1, "PowerSwitchDriver").on()
    assert "guess" not in str(e.value)


def test_the_url_is_shown_without_credentials():
    assert redact("http://hil:pw@127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    assert redact("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert redact("pdu.lab") == "pdu.lab"


def test_a_malformed_request_gets_an_error_not_a_hang(switch):
    port, _ = switch
    for length, status in ((b"-1", b"400"), (b"x", b"400"), (b"99999", b"413")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"PUT /restapi/relay/outlets/=1/state/ HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: " + length + b"\r\n\r\n")
            assert s.recv(100).split()[1] == status
