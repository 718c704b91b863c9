"""Network namespaces joined to this host by a veth pair: the virtual lab's boards' network and
the exporter hosts of a rack on one machine (hil/virtual_lab/boardnet.py,
hil/scheduling/racknet.py).

A process holds each namespace (`sleep`, retitled with a name and the directory of whoever
made it, so that a teardown after a killed supervisor finds it). When it and whatever runs
inside end, the kernel removes the namespace and both ends of its veth.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hil.errors import InfrastructureError


def holder_command(name: str, directory: Path) -> list[str]:
    """A process that holds a new network namespace until it is signalled; its command line
    reads `name directory`."""
    return ["unshare", "--net", "--", "bash", "-c", f'exec -a "{name} $0" sleep infinity',
            str(directory)]


def differs(pid: int) -> bool:
    """`pid` has left this process's network namespace (unshare has done its work)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def enter(pid: int, argv: list[str]) -> list[str]:
    """`argv` run inside the namespace `pid` holds (nsenter execs it: same pid, same process
    group)."""
    return ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]


def link_commands(pid: int, veth: str, host_side: str, inside: str,
                  default_via: str | None = None) -> list[list[str]]:
    """This host's end `veth` with address `host_side` (CIDR), the namespace's end eth0 with
    `inside`, and the namespace's default route if it must reach more than the link."""
    cmds = [
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(pid)],
        ["ip", "address", "add", host_side, "dev", veth],
        ["ip", "link", "set", veth, "up"],
        enter(pid, ["ip", "link", "set", "lo", "up"]),
        enter(pid, ["ip", "address", "add", inside, "dev", "eth0"]),
        enter(pid, ["ip", "link", "set", "eth0", "up"]),
    ]
    if default_via:
        cmds.append(enter(pid, ["ip", "route", "add", "default", "via", default_via]))
    return cmds


def link(pid: int, veth: str, host_side: str, inside: str, what: str,
         default_via: str | None = None) -> None:
    """Join the namespace `pid` holds to this host; a leftover veth of the same name (from a
    run killed outright) is removed first."""
    subprocess.run(["ip", "link", "delete", veth], capture_output=True)
    for cmd in link_commands(pid, veth, host_side, inside, default_via):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise InfrastructureError(f"{what}: `{' '.join(cmd)}` failed: {r.stderr.strip()} "
                                      f"(is {host_side} taken by another lab on this host?)")
