"""A labgrid coordinator and exporter on loopback that serve N places whose resources need no
device (`NetworkService`): the scheduling side of a lab without its boards, for the scheduler
benchmark and the tests of the coordinator client, janitor and leases.

The coordinator is labgrid's own, started in a directory of its own so that a restart keeps
its places (it saves them every 15 s, and on nothing else); the exporter is labgrid's own.

With `hosts` > 1 the places come from that many exporters, each in a network namespace of
its own joined to this host by a veth pair, as the exporter hosts of a rack are: each has its
own address, and reaches the coordinator over its own link (see hil/scheduling/racknet.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from labgrid.util import Timeout

from hil.errors import InfrastructureError
from hil.ports import free_port
from hil.scheduling import racknet
from hil.scheduling.coordinator import Coordinator

SAVE_PERIOD_S = 15.0  # labgrid-coordinator writes places.yaml this often


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def exporter_config(places: list[str]) -> dict[str, Any]:
    return {name: {"location": "loopback",
                   "service": {"cls": "NetworkService", "address": "127.0.0.1",
                               "username": "root", "port": 22}}
            for name in places}


class LoopbackLab:
    """Start with `start()`, end with `stop()` (or as a context manager)."""

    def __init__(self, directory: Path, places: int, tags: dict[str, str] | None = None,
                 exporter: str = "loopback", hosts: int = 1):
        self.directory = directory
        self.names = [f"place-{i}" for i in range(places)]
        # Healthy and checked now: a janitor with a long interval leaves them alone.
        self.tags = {"board": "loop", "health": "good",
                     "health-checked": f"{time.time():.0f}", **(tags or {})}
        self.exporter_name = exporter
        self.rack = racknet.Rack(directory, hosts) if hosts > 1 else None
        self.listen = "127.0.0.1"  # or, once started, the rack's own link
        self.port = 0
        self.address = ""
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.exporters: list[subprocess.Popen[bytes]] = []
        self._exporter_commands: list[list[str]] = []

    @property
    def exporter(self) -> subprocess.Popen[bytes] | None:
        return self.exporters[0] if self.exporters else None

    def host_of(self, place: str) -> int:
        """Which exporter host serves `place` (round robin)."""
        return self.names.index(place) % len(self.exporter_names())

    def exporter_names(self) -> list[str]:
        if self.rack is None:
            return [self.exporter_name]
        return [f"{self.exporter_name}-{i}" for i in range(self.rack.hosts)]

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            return subprocess.Popen(cmd, cwd=self.directory, stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL)
        finally:
            out.close()

    def start_coordinator(self) -> None:
        self.coordinator = self._spawn("coordinator", [_tool("labgrid-coordinator"), "--listen",
                                                       self.address])

    def start(self, timeout: float = 60.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.rack is not None:
            self.rack.start()
            self.listen = self.rack.coordinator_address
        self.port = free_port(self.listen)
        self.address = f"{self.listen}:{self.port}"
        self.start_coordinator()
        exporters = self.exporter_names()
        with Coordinator(self.address, purpose="loopback-setup", connect_timeout=timeout) as c:
            for name in self.names:
                c.create_place(name)
                c.add_match(name, f"{exporters[self.host_of(name)]}/{name}/*")
                c.set_tags(name, self.tags)
            for i, exporter in enumerate(exporters):
                mine = [n for n in self.names if self.host_of(n) == i]
                config = self.directory / f"{exporter}.yaml"
                config.write_text(yaml.safe_dump(exporter_config(mine)))
                hostname = self.rack.host_address(i) if self.rack else "127.0.0.1"
                cmd = [_tool("labgrid-exporter"), "-c", self.address, "--name", exporter,
                       "--hostname", hostname, str(config)]
                self._exporter_commands.append(self.rack.enter(i, cmd) if self.rack else cmd)
                self.exporters.append(self._spawn(exporter, self._exporter_commands[-1]))
            deadline = Timeout(float(timeout))
            generation = c.generation
            while not all(p.resources and all(p.resources.values()) for p in c.places()):
                ended = [e for e in self.exporters if e.poll() is not None]
                if ended or deadline.expired:
                    logs = "".join((self.directory / f"{e}.log").read_text()[-800:]
                                   for e in exporters)
                    raise InfrastructureError(
                        f"the loopback exporters did not export {len(self.names)} places: "
                        f"{logs}")
                generation = c.wait_for_change(generation, 1.0)

    def restart_coordinator(self, down_s: float = 1.0) -> None:
        """Stop the coordinator and start it again (its places as last saved)."""
        assert self.coordinator is not None
        self.coordinator.terminate()
        self.coordinator.wait(30)
        time.sleep(down_s)
        self.start_coordinator()

    def restart_exporters(self, timeout: float = 30.0) -> None:
        """Start again the exporters that ended, as a lab host's service manager does (labgrid's
        exporter ends when it loses the coordinator)."""
        deadline = Timeout(timeout)
        for i, proc in enumerate(self.exporters):
            while proc.poll() is None and not deadline.expired:
                time.sleep(0.1)
            if proc.poll() is not None:
                self.exporters[i] = self._spawn(self.exporter_names()[i],
                                                self._exporter_commands[i])

    def stop_exporter(self, host: int) -> None:
        """An exporter host goes away (killed outright, as a host that loses power)."""
        proc = self.exporters[host]
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        # Killed outright: nothing of theirs is kept (labgrid's exporter takes seconds to end
        # on SIGTERM, and the coordinator saves nothing on it).
        for proc in (*self.exporters, self.coordinator):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.rack is not None:
            self.rack.stop()

    def pids(self) -> dict[str, int]:
        out = {"coordinator": self.coordinator.pid} if self.coordinator else {}
        for i, p in enumerate(self.exporters):
            out["exporter" if i == 0 else f"exporter-{i}"] = p.pid
        return out

    def __enter__(self) -> LoopbackLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
