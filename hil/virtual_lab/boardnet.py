"""The boards' network: the virtual boards' QEMUs in a network namespace of their own.

QEMU's user network lets a guest reach its host's loopback as 10.0.2.2 and any address the
host routes to, so a board shell could talk to the coordinator (which has no authentication),
the power switch or anything else listening on the host. A real lab puts its boards on a
network of their own, where the exporter host has one interface and serves TFTP on it. Here
that network is a namespace held by one process for the lab's lifetime, joined to this host
by a veth pair:

    this host  HOST_ADDRESS/30 (tftpd listens here)  <-veth->  eth0 BOARD_SIDE/30  boards' QEMUs

Inside it 10.0.2.2 is the namespace's own, empty loopback and the only route is the veth's
/30: a board reaches the TFTP server and nothing that listens on loopback or on another
address of this host. When the holder and the last board's QEMU end, the kernel removes the
namespace and both ends of the veth: nothing outlives the lab.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hil import netns

# Out of the ranges Docker, libvirt and LXC take by default; one lab per host uses it (its
# TFTP server's port 69 is one per address anyway).
HOST_ADDRESS = "10.231.69.1"
BOARD_SIDE = "10.231.69.2"
PREFIX = 30
HOLDER_NAME = "hil-boardnet"


def veth_name(directory: Path) -> str:
    """This host's end of the lab's veth pair (interface names have at most 15 bytes)."""
    return "hilb" + hashlib.sha256(str(directory).encode()).hexdigest()[:10]


def holder_command(directory: Path) -> list[str]:
    """A process that holds a new network namespace until it is signalled. Its command line
    names the lab directory, so that `hil lab down` finds it after a killed supervisor."""
    return netns.holder_command(HOLDER_NAME, directory)


def enter(pid: int, argv: list[str]) -> list[str]:
    """`argv` run inside the namespace `pid` holds (nsenter execs it: same pid, same
    process group, so the power switch still ends it by its group)."""
    return netns.enter(pid, argv)


def setup_commands(pid: int, veth: str) -> list[list[str]]:
    # No default route inside: the veth's /30 is all a board can reach.
    return netns.link_commands(pid, veth, f"{HOST_ADDRESS}/{PREFIX}", f"{BOARD_SIDE}/{PREFIX}")


def set_up(pid: int, veth: str) -> None:
    """Join the namespace `pid` holds to this host; a leftover veth of a lab that was killed
    outright is removed first (its name is the same lab directory's)."""
    netns.link(pid, veth, f"{HOST_ADDRESS}/{PREFIX}", f"{BOARD_SIDE}/{PREFIX}",
               "the boards' network")
