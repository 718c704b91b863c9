"""Boot the lab-host VM by hand: `python -m hil.virtual_lab.labhost --adapter HILBRD01:1 -- CMD`.

Each --adapter is SERIAL:PORT[:CHARDEV]: xHCI root port 1-4; CHARDEV a QEMU chardev backend
without id=, by default a file WORKDIR/adapterPORT.out (a `null` one leaves the adapter
unplugged). Runs each command after `--` in the VM and prints its output and exit code;
--boots N boots N times and prints the boot times; --hold keeps the VM up until Ctrl-C with
its console free for `socat -,raw,echo=0 UNIX-CONNECT:WORKDIR/console.sock`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hil.errors import InfrastructureError
from hil.virtual_lab.labhost.vm import Adapter, LabHostVM


def parse_adapter(text: str) -> Adapter:
    serial, sep, rest = text.partition(":")
    port, _, chardev = rest.partition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: want SERIAL:PORT[:CHARDEV]")
    return Adapter(serial, int(port), chardev)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.virtual_lab.labhost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", action="append", type=parse_adapter, default=[],
                   metavar="SERIAL:PORT[:CHARDEV]")
    p.add_argument("--workdir", help="keep the VM's files here (default: a temporary folder)")
    p.add_argument("--boots", type=int, default=1, help="boot this many times (boot time)")
    p.add_argument("--hold", action="store_true", help="stay up until Ctrl-C")
    p.add_argument("command", nargs="*", help="shell commands to run in the VM")
    args = p.parse_args(argv)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="hil-labhost-"))
    rc = 0
    times = []
    try:
        for _ in range(args.boots):
            adapters = [a if a.chardev else
                        Adapter(a.serial, a.port, f"file,path={workdir}/adapter{a.port}.out")
                        for a in args.adapter]
            vm = LabHostVM(workdir, adapters)
            try:
                times.append(vm.start())
                print(f"lab-host VM: shell with udev settled after {times[-1]:.1f} s "
                      f"(guest uptime {vm.guest_uptime_s:.1f} s)", flush=True)
                try:
                    vm.wait_adapters(len(adapters), timeout=15)
                except InfrastructureError as e:
                    print(f"warning: {e}", flush=True)
                for cmd in args.command:
                    r = vm.run(cmd, timeout=600)
                    print(f"$ {cmd}\n{r.output}[exit {r.rc}]", flush=True)
                    rc = rc or r.rc
                if args.hold:
                    if vm.console is not None:
                        vm.console.close()
                        vm.console = None
                    print(f"console: socat -,raw,echo=0 UNIX-CONNECT:{vm.console_sock}  "
                          "(Ctrl-C here stops the VM)", flush=True)
                    while vm.proc is not None and vm.proc.poll() is None:
                        time.sleep(1)
            finally:
                vm.stop()
        if len(times) > 1:
            print(f"boot times: {' '.join(f'{t:.1f}' for t in times)} s; "
                  f"median {statistics.median(times):.1f} s")
    except KeyboardInterrupt:
        rc = 130
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
