"""The lab's power relay: labgrid's own `rest` backend, with no credentials, switches a board
behind the real switch (which wants them); a silent or refusing switch is told apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from labgrid.driver.power import rest

from hil.scheduling.reservations import answers
from hil.virtual_lab.power import relay

from .test_power_switch import CREDS, alive, pid_of, switch, wait_for  # noqa: F401 (fixture)


@pytest.mark.parametrize(("method", "path", "body", "expect"), [
    ("GET", "/outlet/1", b"", relay.Get(1)),
    ("PUT", "/outlet/2", b"1", relay.Set(2, True)),
    ("PUT", "/outlet/2", b"0\n", relay.Set(2, False)),
    ("PUT", "/outlet/2", b"on", relay.Refusal(400, "the body is 0 or 1")),
    ("GET", "/outlet/9", b"", relay.Refusal(404, "no outlet 9")),
    ("GET", "/outlet/{index}", b"", relay.Refusal(404, "no such resource: /outlet/N")),
    ("DELETE", "/outlet/1", b"", relay.Refusal(405, "DELETE not allowed")),
])
def test_requests_are_read_before_the_switch_is_asked(method, path, body, expect) -> None:
    assert relay.parse(method, path, body, {1, 2}) == expect


def start_relay(tmp: Path, switch_port: int, password: str) -> tuple[subprocess.Popen[str], str]:
    creds = tmp / "relay-credentials"
    creds.write_text(f"{CREDS['LG_POWER_USER']}:{password}\n")
    creds.chmod(0o600)
    ready = tmp / "relay.port"
    proc = subprocess.Popen([sys.executable, "-m", "hil.virtual_lab.power.relay",
                             "--switch", f"http://127.0.0.1:{switch_port}",
                             "--credentials", str(creds), "--outlet", "1", "--outlet", "2",
                             "--timeout", "1", "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = int(wait_for(lambda: ready.exists() and ready.read_text()))
    return proc, f"http://127.0.0.1:{port}/outlet/{{index}}"


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err


def test_labgrids_rest_backend_switches_an_outlet_through_the_relay_without_credentials(
        switch, monkeypatch) -> None:  # noqa: F811
    port, tmp = switch
    for k in CREDS:  # the client has none: the relay has them
        monkeypatch.delenv(k)
    proc, url = start_relay(tmp, port, CREDS["LG_POWER_PASSWORD"])
    try:
        assert rest.power_get(url, None, 1) is False
        rest.power_set(url, None, 1, True)
        pid = pid_of(tmp / "pid1")
        assert alive(pid) and rest.power_get(url, None, 1) is True
        rest.power_set(url, None, 1, False)
        assert not alive(pid) and rest.power_get(url, None, 1) is False
        assert answers(url.format(index=1))
    finally:
        err = stop(proc)
    assert CREDS["LG_POWER_PASSWORD"] not in err


def test_a_switch_that_refuses_the_relays_credentials_is_a_502_that_says_so(switch) -> None:  # noqa: F811
    port, tmp = switch
    proc, url = start_relay(tmp, port, "guess")
    try:
        r = requests.get(url.format(index=1), timeout=10)
        assert r.status_code == 502 and "refused the credentials (HTTP 401)" in r.text
        with pytest.raises(requests.HTTPError):
            rest.power_set(url, None, 1, True)
        assert not answers(url.format(index=1))  # the session's watch: the switch is gone
    finally:
        stop(proc)


def test_a_switch_that_does_not_answer_is_a_504_within_the_relays_deadline(tmp_path) -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        proc, url = start_relay(tmp_path, silent.getsockname()[1], "pw")
        try:
            r = requests.get(url.format(index=2), timeout=10)
            assert r.status_code == 504 and "no answer within 1 s" in r.text
        finally:
            stop(proc)
