"""The lab's power relay: labgrid's own client switches a board without the switch's
credentials, which stay on the exporter host.

A NetworkPowerPort's parameters are public (the coordinator shows them to every client), so a
switch that wants a login cannot be published with its password. The relay runs on the
exporter host beside the exporter, holds the credentials (a file only its user reads), listens
where the exporter's other services do, and speaks labgrid's `rest` power model:

    GET  /outlet/N          -> "1" or "0"
    PUT  /outlet/N  "1|0"   -> 204

Each request goes to the switch through labgrid's own backend for it (here
`digitalloggers_restapi`, digest auth) with the credentials, within a deadline: 504 when the
switch does not answer in time, 502 when it fails or refuses. So `labgrid-client power
get|on|off|cycle` works for whoever holds the place, and labgrid-client refuses it to anyone
else, as for every power driver.

Why not Debian's pdudaemon, which labgrid's PDUDaemonDriver reaches: its HTTP API queues a
request and answers before the outlet switched, reports no failure back, and cannot tell an
outlet's state (the driver's `get` raises NotImplementedError), so `power get` and a session's
"switch silent" watch could not work through it.

    python -m hil.virtual_lab.power.relay --switch http://127.0.0.1:PORT --credentials FILE \
        --outlet 1 --outlet 2 [--address 127.0.0.1] [--port 0] [--ready-file F]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hil.labgrid.credentials import load_credentials
from hil.labgrid.driver.powerswitch import NoAnswer, describe, with_credentials, within
from hil.virtual_lab.power.switch import serve_until_signalled

log = logging.getLogger("hil.virtual_lab.power.relay")

PATH = re.compile(r"/outlet/(\d+)")
MODEL = "rest"  # what the exporter publishes: labgrid's backend for this API


@dataclass(frozen=True)
class Get:
    outlet: int


@dataclass(frozen=True)
class Set:
    outlet: int
    on: bool


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def parse(method: str, path: str, body: bytes, outlets: Collection[int]) -> Get | Set | Refusal:
    """What a request asks of which outlet, or why it is refused."""
    m = PATH.fullmatch(path)
    if not m:
        return Refusal(404, "no such resource: /outlet/N")
    outlet = int(m.group(1))
    if outlet not in outlets:
        return Refusal(404, f"no outlet {outlet}")
    if method == "GET":
        return Get(outlet)
    if method != "PUT":
        return Refusal(405, f"{method} not allowed")
    value = body.strip()
    if value not in (b"0", b"1"):
        return Refusal(400, "the body is 0 or 1")
    return Set(outlet, value == b"1")


class Relay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str, port: int, outlets: Collection[int],
                 get: Callable[[int], bool], put: Callable[[int, bool], None]):
        self.outlets = outlets
        self.get = get
        self.put = put
        super().__init__((address, port), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    server: Relay

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = parse(method, self.path, body, self.server.outlets)
        status, text = 200, ""
        try:
            if isinstance(request, Refusal):
                status, text = request.status, request.message
            elif isinstance(request, Get):
                text = "1" if self.server.get(request.outlet) else "0"
            else:
                self.server.put(request.outlet, request.on)
                status = 204
        except NoAnswer as e:
            status, text = 504, f"the switch: {e}"
        except Exception as e:
            status, text = 502, f"the switch: {describe(e)}"
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def switch_calls(switch: str, credentials: str, model: str, timeout: float
                 ) -> tuple[Callable[[int], bool], Callable[[int, bool], None]]:
    """get(outlet) and put(outlet, on) on the switch, with the credentials, within `timeout`."""
    host = with_credentials(switch, {"HIL_POWER_CREDENTIALS": credentials})
    backend = importlib.import_module(f"labgrid.driver.power.{model}")

    def get(outlet: int) -> bool:
        return bool(within(timeout, backend.power_get, host, None, outlet))

    def put(outlet: int, on: bool) -> None:
        within(timeout, backend.power_set, host, None, outlet, on)

    return get, put


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.virtual_lab.power.relay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switch", required=True, help="the switch's URL, without credentials")
    ap.add_argument("--model", default="digitalloggers_restapi",
                    help="labgrid's NetworkPowerPort model of the switch")
    ap.add_argument("--credentials", required=True, metavar="FILE", help="user:password, mode 600")
    ap.add_argument("--outlet", type=int, action="append", required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="answer 504 when the switch takes longer (default 20 s)")
    ap.add_argument("--ready-file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        load_credentials(args.credentials, {})  # mode 600, outside the repository, URL-safe
    except (ValueError, OSError) as e:
        ap.error(str(e))
    get, put = switch_calls(args.switch, args.credentials, args.model, args.timeout)
    try:
        relay = Relay(args.address, args.port, set(args.outlet), get, put)
    except OSError as e:
        ap.error(f"cannot listen on {args.address}:{args.port}: {e.strerror}")
    serve_until_signalled(relay, args.ready_file, f"relaying {args.address}:{relay.port} to "
                          f"{args.switch}, outlets {sorted(args.outlet)}")
    relay.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
