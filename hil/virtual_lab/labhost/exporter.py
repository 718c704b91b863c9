"""labgrid's exporter inside the lab-host VM, publishing the VM's USB serial adapters to a
coordinator on this host.

QEMU's user network lets the VM reach this host's 127.0.0.1 as 10.0.2.2, so a coordinator
listening on 127.0.0.1:PORT is `10.0.2.2:PORT` for the exporter. The exporter starts ser2net
(on a free port it picks inside the VM) only when a client acquires a place; a client on this
host reaches that port only through a QEMU forward (LabHostVM.forward) with the exporter
publishing `--hostname 127.0.0.1`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from hil.virtual_lab.labhost.console import Result
from hil.virtual_lab.labhost.vm import LabHostVM

SLIRP_HOST = "10.0.2.2"  # this host, as the VM sees it
LOG = "/tmp/labgrid-exporter.log"


def coordinator_in_vm(host_port: int) -> str:
    return f"{SLIRP_HOST}:{host_port}"


def start(vm: LabHostVM, config: str, coordinator_port: int, name: str,
          hostname: str = "127.0.0.1", isolated: bool = False) -> int:
    """Start labgrid-exporter in the VM on `config` (a path inside the VM), in the background,
    started again 3 s after it ends, as a lab host's service manager does (labgrid's exporter
    exits when its coordinator's stream ends: a coordinator restart). Its log is LOG in the
    VM. Returns the process group in the VM. `isolated`: clients reach its resources only
    through SSH to the VM (labgrid's `--isolated`)."""
    exe = str(Path(sys.executable).parent / "labgrid-exporter")  # the same path in the VM
    cmd = shlex.join([exe, "-c", coordinator_in_vm(coordinator_port), "--name", name,
                      "--hostname", hostname, *(["--isolated"] if isolated else []), config])
    # labgrid's exporter lists the udev devices before it listens for udev's events: an
    # adapter plugged in between (a board power-cycled while it starts) would stay missing.
    # A `change` event for every tty once it listens makes it look again.
    retrigger = "udevadm trigger --action=change --subsystem-match=tty"
    loop = shlex.quote(f"while :; do (sleep 10; {retrigger}; sleep 20; {retrigger}) & "
                       f"{cmd}; echo exited $?; sleep 3; done")
    out = vm.run(f"cd /tmp && setsid nohup sh -c {loop} >{LOG} 2>&1 </dev/null & echo $!"
                 ).check().output
    return int(out.split()[-1])


def log(vm: LabHostVM) -> str:
    return vm.run(f"cat {LOG}").output


def stop(vm: LabHostVM, pid: int) -> Result:
    """End the loop and the exporter it runs (setsid made `pid` their group's leader)."""
    return vm.run(f"kill -TERM -- -{pid}")
