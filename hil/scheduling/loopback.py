"""A labgrid coordinator and exporter on loopback that serve N places whose resources need no
device (`NetworkService`): the scheduling side of a lab without its boards, for the scheduler
benchmark and the tests of the coordinator client, janitor and leases.

The coordinator is labgrid's own, started in a directory of its own so that a restart keeps
its places (it saves them every 15 s, and on nothing else); the exporter is labgrid's own.
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
                 exporter: str = "loopback"):
        self.directory = directory
        self.names = [f"place-{i}" for i in range(places)]
        # Healthy and checked now: a janitor with a long interval leaves them alone.
        self.tags = {"board": "loop", "health": "good",
                     "health-checked": f"{time.time():.0f}", **(tags or {})}
        self.exporter_name = exporter
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.exporter: subprocess.Popen[bytes] | None = None

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
        self.start_coordinator()
        config = self.directory / "exporter.yaml"
        config.write_text(yaml.safe_dump(exporter_config(self.names)))
        with Coordinator(self.address, purpose="loopback-setup", connect_timeout=timeout) as c:
            for name in self.names:
                c.create_place(name)
                c.add_match(name, f"{self.exporter_name}/{name}/*")
                c.set_tags(name, self.tags)
            self.exporter = self._spawn("exporter", [
                _tool("labgrid-exporter"), "-c", self.address, "--name", self.exporter_name,
                "--hostname", "127.0.0.1", str(config)])
            deadline = Timeout(float(timeout))
            generation = c.generation
            while not all(p.resources and all(p.resources.values()) for p in c.places()):
                if self.exporter.poll() is not None or deadline.expired:
                    raise InfrastructureError(
                        f"the loopback exporter did not export {len(self.names)} places: "
                        f"{(self.directory / 'exporter.log').read_text()[-1500:]}")
                generation = c.wait_for_change(generation, 1.0)

    def restart_coordinator(self, down_s: float = 1.0) -> None:
        """Stop the coordinator and start it again (its places as last saved)."""
        assert self.coordinator is not None
        self.coordinator.terminate()
        self.coordinator.wait(30)
        time.sleep(down_s)
        self.start_coordinator()

    def stop(self) -> None:
        # Killed outright: nothing of theirs is kept (labgrid's exporter takes seconds to end
        # on SIGTERM, and the coordinator saves nothing on it).
        for proc in (self.exporter, self.coordinator):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in (("coordinator", self.coordinator),
                                            ("exporter", self.exporter)) if p is not None}

    def __enter__(self) -> LoopbackLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
