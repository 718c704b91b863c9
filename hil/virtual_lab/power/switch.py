"""A power switch for virtual boards: Digital Loggers' REST API on 127.0.0.1, one command per
outlet.

    python -m hil.virtual_lab.power.switch --outlet 1='qemu-system-aarch64 ...' [--outlet 2=...]
        [--port 0] [--ready-file PATH] [--grace 10] [--credentials FILE] [--log-dir DIR]

A place then powers the board as it would a real one:

    NetworkPowerPort:
      model: digitalloggers_restapi
      host: !template 'http://$LG_POWER_USER:$LG_POWER_PASSWORD@127.0.0.1:$LG_POWER_PORT'
      index: 1

Why this backend: `digitalloggers_restapi` is a real vendor's multi-outlet PDU (DLI Web Power
Switch Pro, 8 outlets) with a small REST API (one GET, one PUT, see `dli`), and it takes its
host as a URL with a port, so the switch can listen on a port chosen at run time. The Gude and
NETIO backends force port 80 (NetworkPowerDriver passes their `PORT`), which needs root and
allows one switch per host; NETIO also hard-codes admin:admin. Shelly Gen2's backend sends no
credentials, `simplerest` is no vendor's protocol. DLI's digest authentication is supported
and always on: any local user could otherwise power boards of the lab.

Credentials come from `--credentials FILE` (`user:password`, mode 600, outside the
repository) or from LG_POWER_USER and LG_POWER_PASSWORD: labgrid's `!template` substitutes
only LG_* variables, so one pair serves the switch and the environment file.

Outlets: on starts the command (an argv, split like a shell would but never run by one) in its
own session and process group; off sends SIGTERM to the group, then SIGKILL after `--grace`
seconds; an outlet is on while its command runs. Stopping the switch (SIGTERM, SIGINT) turns
every outlet off. Killing it with SIGKILL leaves them running, as a real PDU whose web server
dies keeps its relays.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from hil.labgrid.credentials import Credentials, load_credentials
from hil.virtual_lab.power import dli

log = logging.getLogger("hil.power")
REPO = Path(__file__).resolve().parents[3]


def parse_outlet(spec: str) -> tuple[int, list[str]]:
    """`INDEX=COMMAND` -> (index, argv)."""
    index, sep, command = spec.partition("=")
    if not sep or not index.strip().isdigit():
        raise ValueError(f"outlet must be INDEX=COMMAND, got {spec!r}")
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ValueError(f"outlet {index}: {e}") from e
    if not argv:
        raise ValueError(f"outlet {index}: empty command")
    return int(index), argv


def parse_outlets(specs: Sequence[str]) -> dict[int, list[str]]:
    outlets: dict[int, list[str]] = {}
    for spec in specs:
        index, argv = parse_outlet(spec)
        if index in outlets:
            raise ValueError(f"outlet {index} given twice")
        outlets[index] = argv
    return outlets


class Outlet:
    """One relay: a command that runs while the outlet is on."""

    def __init__(self, index: int, argv: list[str], grace: float, output: IO[Any] | int | None):
        self.index = index
        self.argv = argv
        self.grace = grace
        self.output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # a slow off must not race an on of the same outlet

    def is_on(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def on(self) -> None:
        with self._lock:
            if self.is_on():
                return
            # A session of its own: off reaches the whole group, and the switch's terminal
            # signals (Ctrl-C) do not.
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.output,
                                          stderr=self.output, start_new_session=True)
            log.info("outlet %d on: pid %d", self.index, self._proc.pid)

    def off(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.poll() is None:
                self._signal(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.grace)
                except subprocess.TimeoutExpired:
                    log.info("outlet %d: pid %d ignored SIGTERM for %.1f s, killing",
                             self.index, proc.pid, self.grace)
            # Also what the leader left behind in its group.
            self._signal(proc.pid, signal.SIGKILL)
            proc.wait()
            log.info("outlet %d off: pid %d exited %s", self.index, proc.pid, proc.returncode)

    @staticmethod
    def _signal(pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)


class Switch(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, outlets: Mapping[int, Outlet], creds: Credentials, port: int = 0):
        self.outlets = outlets
        self.creds = creds
        self.secret = secrets.token_bytes(32)  # signs nonces; a new one each start
        # Loopback only: the lab's power relay, beside it, is its one client.
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def all_off(self) -> None:
        for outlet in self.outlets.values():
            outlet.off()


class Handler(BaseHTTPRequestHandler):
    server: Switch
    server_version = "hil-power-switch"

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        # A negative length would read until the client hangs up.
        if not 0 <= length <= dli.MAX_BODY:
            self._send(dli.Reply(400 if length < 0 else 413))
            return
        body = self.rfile.read(length)
        now = time.time()
        auth = dli.check_authorization(self.headers.get("Authorization"), self.command, self.path,
                                       creds=self.server.creds, secret=self.server.secret, now=now)
        if auth is not dli.Auth.OK:
            nonce = dli.make_nonce(self.server.secret, now)
            self._send(dli.unauthorized(nonce, stale=auth is dli.Auth.STALE))
            return
        req = dli.parse_request(self.command, self.path, body, csrf=self.headers.get("X-CSRF"),
                                outlets=self.server.outlets)
        if isinstance(req, dli.Reply):
            self._send(req)
        elif isinstance(req, dli.GetState):
            self._send(dli.state_reply(self.server.outlets[req.outlet].is_on()))
        else:
            outlet = self.server.outlets[req.outlet]
            try:
                outlet.on() if req.on else outlet.off()
            except OSError as e:
                log.error("outlet %d: %s", req.outlet, e)
                self._send(dli.Reply(500, f"outlet {req.outlet}: {e}\n".encode()))
                return
            self._send(dli.set_reply())

    def _send(self, reply: dli.Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: digest never puts a password on the wire, and headers
        # (Authorization) are not logged.
        log.info("%s %s", self.address_string(), format % args)


def write_ready(path: str, port: int) -> None:
    """Atomically, so whoever polls the file never reads half of it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, target)


def serve_until_signalled(server: ThreadingHTTPServer, ready_file: str | None, said: str
                          ) -> None:
    """Serve until SIGTERM or SIGINT; the port goes to `ready_file` and stdout once it
    answers."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # A short poll: shutdown() waits for it.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="http")
    thread.start()
    port = int(server.server_address[1])
    if ready_file:
        write_ready(ready_file, port)
    print(port, flush=True)
    log.info("%s", said)
    stop.wait()
    server.shutdown()
    thread.join()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.virtual_lab.power.switch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outlet", action="append", required=True, metavar="INDEX=COMMAND")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (the default)")
    ap.add_argument("--ready-file", help="write the port here once the switch answers")
    ap.add_argument("--grace", type=float, default=10.0,
                    help="seconds between SIGTERM and SIGKILL on off (default 10)")
    ap.add_argument("--credentials", metavar="FILE", help="user:password, mode 600")
    ap.add_argument("--log-dir", help="outlet N's output to DIR/outlet-N.log "
                    "(default: the switch's stderr)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s power-switch: %(message)s")
    try:
        commands = parse_outlets(args.outlet)
        for index, cmd in commands.items():
            if not shutil.which(cmd[0]):
                raise ValueError(f"outlet {index}: {cmd[0]}: command not found")
        creds = load_credentials(args.credentials, os.environ)
    except (ValueError, OSError) as e:
        ap.error(str(e))

    outlets: dict[int, Outlet] = {}
    for index, cmd in commands.items():
        # Not the switch's stdout: a reader of the port there would wait for the outlets too.
        output: IO[Any] | int = sys.stderr.fileno()
        if args.log_dir:
            output = open(Path(args.log_dir) / f"outlet-{index}.log", "ab")  # noqa: SIM115
        outlets[index] = Outlet(index, cmd, args.grace, output)
    try:
        switch = Switch(outlets, creds, args.port)
    except OSError as e:
        ap.error(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror}")

    serve_until_signalled(switch, args.ready_file, f"listening on 127.0.0.1:{switch.port}, "
                          f"outlets {sorted(outlets)}")
    switch.all_off()
    switch.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
