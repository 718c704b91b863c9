"""Exporter hosts of a rack on one machine: each a network namespace of its own, joined to this
host by a veth pair, so that every exporter has its own address and reaches the coordinator
over its own link, as the lab hosts of a rack do.

    this host  10.231.70.(4i+1)/30  <-veth->  eth0 10.231.70.(4i+2)/30  exporter host i

The coordinator listens on host 0's link address (this host's end of the first pair); the
others reach it through their default route, since a host answers on any of its addresses.
A process holds each namespace (`sleep`, named after the rack's directory); when it and the
exporter in it end, the kernel removes the namespace and both ends of its veth.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from labgrid.util import Timeout

from hil import netns
from hil.errors import InfrastructureError

NETWORK = "10.231.70"  # beside the virtual lab's boards' network (10.231.69.0/30)
MAX_HOSTS = 64  # /30s in a /24
HOLDER_NAME = "hil-rackhost"


class Rack:
    def __init__(self, directory: Path, hosts: int):
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"{hosts} exporter hosts: give 1 to {MAX_HOSTS}")
        self.directory = directory
        self.hosts = hosts
        self.holders: list[subprocess.Popen[bytes]] = []

    @property
    def coordinator_address(self) -> str:
        return self.link_address(0)

    def link_address(self, host: int) -> str:
        """This host's end of exporter host `host`'s link."""
        return f"{NETWORK}.{4 * host + 1}"

    def host_address(self, host: int) -> str:
        return f"{NETWORK}.{4 * host + 2}"

    def veth(self, host: int) -> str:
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:8]
        return f"hilr{digest}{host:02d}"[:15]

    def enter(self, host: int, argv: list[str]) -> list[str]:
        return netns.enter(self.holders[host].pid, argv)

    def start(self) -> None:
        for host in range(self.hosts):
            holder = subprocess.Popen(netns.holder_command(HOLDER_NAME, self.directory),
                                      stdin=subprocess.DEVNULL)
            self.holders.append(holder)
            deadline = Timeout(10.0)
            while not netns.differs(holder.pid):  # until unshare has made it
                if deadline.expired or holder.poll() is not None:
                    raise InfrastructureError(f"rack network: no namespace for host {host}")
                time.sleep(0.02)
            netns.link(holder.pid, self.veth(host), f"{self.link_address(host)}/30",
                       f"{self.host_address(host)}/30", "rack network",
                       default_via=self.link_address(host))

    def stop(self) -> None:
        for holder in self.holders:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        for host in range(len(self.holders)):
            subprocess.run(["ip", "link", "delete", self.veth(host)], capture_output=True)
        self.holders = []
