"""Exporter hosts of a rack on one machine: each a network namespace of its own, joined to this
host by a veth pair, so that every exporter has its own address and reaches the coordinator
over its own link, as the lab hosts of a rack do.

    this host  10.231.N.(4i+1)/30  <-veth->  eth0 10.231.N.(4i+2)/30  exporter host i

The coordinator listens on host 0's link address (this host's end of the first pair); the
others reach it through their default route, since a host answers on any of its addresses.
A process holds each namespace (`sleep`, named after the rack's directory); when it and the
exporter in it end, the kernel removes the namespace and both ends of its veth.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import time
from pathlib import Path

from labgrid.util import Timeout

from hil import netns
from hil.errors import InfrastructureError
from hil.ports import is_local_address

# Beside the virtual lab's boards' network (10.231.69.0/30). Each rack takes the first /24 no
# other rack of this machine holds (a flock each, which the kernel drops however its holder
# ends): two test runs, or a bench beside a test, each get their own.
NETWORKS = tuple(f"10.231.{n}" for n in range(70, 80))
LOCK_DIR = Path("/run")
MAX_HOSTS = 64  # /30s in a /24
HOLDER_NAME = "hil-rackhost"


class Rack:
    def __init__(self, directory: Path, hosts: int):
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"{hosts} exporter hosts: give 1 to {MAX_HOSTS}")
        self.directory = directory
        self.hosts = hosts
        self.holders: list[subprocess.Popen[bytes]] = []
        self.network = ""
        self._lock: int | None = None

    def _take_network(self) -> None:
        for network in NETWORKS:
            fd = os.open(LOCK_DIR / f"hil-rack-{network}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if is_local_address(f"{network}.1"):
                # A rack whose owner was killed outright: its namespaces' holders keep the
                # links (and their addresses) until they are ended.
                os.close(fd)
                continue
            self._lock, self.network = fd, network
            return
        raise InfrastructureError(f"rack network: every one of {NETWORKS[0]}-{NETWORKS[-1]}.0/24 "
                                  "is held by another rack on this machine (or left by a killed "
                                  f"one: `pkill -f {HOLDER_NAME}` ends those)")

    @property
    def coordinator_address(self) -> str:
        return self.link_address(0)

    def link_address(self, host: int) -> str:
        """This host's end of exporter host `host`'s link (once started)."""
        return f"{self.network}.{4 * host + 1}"

    def host_address(self, host: int) -> str:
        return f"{self.network}.{4 * host + 2}"

    def veth(self, host: int) -> str:
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:8]
        return f"hilr{digest}{host:02d}"[:15]

    def enter(self, host: int, argv: list[str]) -> list[str]:
        return netns.enter(self.holders[host].pid, argv)

    def start(self) -> None:
        self._take_network()
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
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
