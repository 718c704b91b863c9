"""The virtual lab: a labgrid coordinator, one exporter on a lab host, and N virtual boards
as its places, all on this machine, reached by clients exactly as a real lab's boards are.

    hil lab up [--boards 2] [--gic v2,v3] [--lab-host vm]   # prints the environment to
                                                            # export, returns when the
                                                            # places are ready
    hil lab down                # stops everything and removes what `up` made

What runs, on ports chosen at run time, every one listening on the lab's address (127.0.0.1,
or the address given to `hil lab up --listen`) and nowhere else:
- labgrid-coordinator;
- the power switch (`hil.virtual_lab.power.switch`, Digital Loggers' REST API, digest auth): outlet
  N starts and kills virtual board N's QEMU, which boots Debian's qemu_arm64 U-Boot;
- serial cables (`hil.virtual_lab.cables`): per board a console and a guest console, tty devices that
  outlive power cycles;
- labgrid-exporter: exports each board's two cables as `RawSerialPort` (ser2net, bound to the
  lab's address by hil.virtual_lab.ser2net_bind), its outlet as `NetworkPowerPort` and a
  `TFTPProvider` directory;
- sshd for labgrid's `RemoteTFTPProvider`, which copies files to the exporter's host over SSH
  (see `hil.virtual_lab.sshd`);
- the boards' network (hil.virtual_lab.boardnet): the boards' QEMUs run in a network namespace of
  their own, which reaches this host only at boardnet.HOST_ADDRESS, where tftpd-hpa serves
  port 69, chrooted and unprivileged (hil.virtual_lab.tftpd_jail). A board shell reaches nothing else.
The exporter publishes the lab's address: clients reach ser2net and sshd there.

With `--lab-host vm` the consoles are not exported from this host: each cable ends in an FTDI
adapter of the lab-host VM, whose own labgrid exporter exports them as `USBSerialPort`s matched
by udev (see hil.virtual_lab.labhost.lab). The places then take their consoles from that exporter and
their power and TFTP from this host's.

Places `virtual-0` .. `virtual-<N-1>` get tags `board=virtual gic=vG kvm=yes`: board i has the
i-th GIC of `--gic` (repeated as needed; by default virtual-0 a GICv2, virtual-1 a GICv3 without
ITS), so that the lab holds both kinds of board a user qualifies, reserved by tag.

`up` starts a supervisor (`python -m hil.virtual_lab.supervisor supervise DIR`) in a session of its
own, which owns every process; `down` sends it SIGTERM. Its state is DIR/lab.json.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from labgrid.util import Timeout

from hil import netns
from hil.errors import ConfigError, InfrastructureError
from hil.firmware.cache import default_images, default_root
from hil.labgrid import vmm
from hil.ports import PortPool, is_local_address
from hil.scheduling.coordinator import Coordinator, CoordinatorUnreachable
from hil.scheduling.janitor import Janitor
from hil.scheduling.metrics import LabMetrics
from hil.scheduling.reservations import HEALTH_TAG
from hil.virtual_lab import boardnet, hostlock, ser2net_bind, sshd, tftpd_jail
from hil.virtual_lab.cables import CableSet
from hil.virtual_lab.labhost import lab as labhost_lab
from hil.virtual_lab.power import relay

log = logging.getLogger("hil.lab")

DEFAULT_DIR = Path(os.environ.get("HIL_LAB_DIR", "/tmp/hil-lab"))
EXPORTER = "hil-lab"
QEMU = "/usr/bin/qemu-system-aarch64"
UBOOT = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
TFTPD = "/usr/sbin/in.tftpd"
SER2NET = "/usr/sbin/ser2net"
TAGS = {"board": "virtual", "kvm": "yes"}  # and gic=vG per board
GICS = (2, 3)
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 240.0  # with the lab-host VM: its boot and its exporter under TCG
LAB_ENV = Path(__file__).resolve().parents[2] / "places" / "virtual-lab.yaml"


def labgrid_tool(name: str) -> str:
    """labgrid's commands from the venv that runs hil, whatever PATH says."""
    return str(Path(sys.executable).parent / name)


# --- the plan: pure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Board:
    name: str
    outlet: int
    console_socket: str
    guest_socket: str
    tftp_dir: str
    gic: int = 2

    @property
    def tags(self) -> dict[str, str]:
        return {**TAGS, "gic": f"v{self.gic}"}


@dataclass(frozen=True)
class LabPlan:
    directory: Path
    boards: int
    address: str  # where every service listens and the exporter publishes (ser2net, sshd)
    coordinator_port: int
    sshd_port: int
    lab_host: str = "local"  # local: consoles exported from this host; vm: the lab-host VM
    gics: tuple[int, ...] = GICS  # board i: gics[i % len(gics)]

    @property
    def coordinator(self) -> str:
        return f"{self.address}:{self.coordinator_port}"

    def board(self, i: int) -> Board:
        name = f"virtual-{i}"
        cables = self.directory / "cables"
        return Board(name, i + 1, str(cables / f"{name}-console.sock"),
                     str(cables / f"{name}-guest.sock"), f"{self.directory / 'tftp' / name}/",
                     self.gics[i % len(self.gics)])

    def all_boards(self) -> list[Board]:
        return [self.board(i) for i in range(self.boards)]

    def qemu_command(self, b: Board) -> list[str]:
        """The board of places/virtual-uboot.yaml (with a GICv3: of places/virtual-gicv3.yaml),
        with its consoles on the lab's cables."""
        return [
            QEMU, "-bios", UBOOT,
            # The guest's machine for that GIC, with EL2 for KVM.
            "-machine", f"{vmm.gic_machine(b.gic)},virtualization=on", "-cpu", "max",
            "-m", "2048M",
            "-smp", "2", "-display", "none",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-chardev", f"socket,id=console,path={b.console_socket}",
            "-serial", "chardev:console",
            # The guest's serial reaches the lab through a virtio console (hvc0 on the board).
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=guestcon,path={b.guest_socket}",
            "-device", "virtconsole,chardev=guestcon",
        ]

    def exporter_config(self, devices: dict[str, str], relay_port: int) -> dict[str, Any]:
        """labgrid-exporter's resources; `devices` maps cable names to their tty."""
        groups: dict[str, Any] = {}
        for b in self.all_boards():
            consoles = {} if self.lab_host == "vm" else {
                "board-console": {"cls": "RawSerialPort", "port": devices[f"{b.name}-console"],
                                  "speed": 115200},
                "guest-console": {"cls": "RawSerialPort", "port": devices[f"{b.name}-guest"],
                                  "speed": 115200},
            }
            groups[b.name] = {
                "location": f"virtual lab in {self.directory}",
                **consoles,
                # No credentials: the coordinator shows every parameter to every client.
                # The lab's power relay holds them (hil.virtual_lab.power.relay), so that labgrid's
                # own client switches the board for whoever holds the place.
                "power": {"cls": "NetworkPowerPort", "model": relay.MODEL,
                          "host": f"http://{self.address}:{relay_port}/outlet/{{index}}",
                          "index": b.outlet},
                "tftp": {"cls": "TFTPProvider", "internal": b.tftp_dir,
                         "external": b.tftp_dir},
            }
        return groups


def cable_names(plan: LabPlan) -> list[str]:
    return [f"{b.name}-{end}" for b in plan.all_boards() for end in ("console", "guest")]


LAB_HOSTS = ("local", "vm")


def parse_gics(text: str) -> tuple[int, ...]:
    """`--gic v2,v3` -> (2, 3)."""
    words = [w.strip() for w in text.split(",")]
    if not all(w in ("v2", "v3") for w in words):
        raise ValueError(f"--gic {text}: write the boards' GICs as v2 or v3, separated by "
                         "commas (board i gets the i-th, repeated as needed)")
    return tuple(int(w[1]) for w in words)


def gic_list(text: str) -> tuple[int, ...]:
    """parse_gics for argparse, which shows an ArgumentTypeError's own message."""
    try:
        return parse_gics(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def listen_problem(listen: str, lab_host: str = "local") -> str | None:
    """Why the lab cannot serve on `listen`, before trying it; None if it may."""
    try:
        address = ipaddress.IPv4Address(listen)
    except ValueError:
        return f"--listen takes one IPv4 address of this host, got {listen!r}"
    if address.is_unspecified:
        return ("--listen 0.0.0.0 would serve every network this host is on: give the one "
                "address the lab's clients reach")
    if listen == boardnet.HOST_ADDRESS:
        return f"--listen {listen} is the boards' network: the boards must not reach the lab"
    if lab_host == "vm" and not address.is_loopback:
        return ("--lab-host vm is reached through QEMU forwards on this host's loopback: it "
                "serves no other address (leave out --listen)")
    return None


def preflight(boards: int, euid: int | None = None, lab_host: str = "local",
              gics: Sequence[int] = GICS, listen: str = LOOPBACK) -> list[str]:
    """What keeps the lab from starting here, each with what to do; [] when nothing does."""
    problems = []
    if (why := listen_problem(listen, lab_host)) is not None:
        problems.append(why)
    elif not is_local_address(listen):
        problems.append(f"--listen {listen} is not an address of this host (see `ip -4 addr`)")
    if (other := hostlock.holder()) is not None:
        problems.append(other.problem())
    elif is_local_address(boardnet.HOST_ADDRESS):
        problems.append(f"the boards' network address {boardnet.HOST_ADDRESS} is taken on this "
                        "host, though no lab holds the lab lock: what a lab killed outright "
                        "left running holds it; `hil lab down --dir` that lab's directory "
                        f"(its `{boardnet.HOLDER_NAME}` process names it)")
    if boards < 1:
        problems.append(f"--boards must be at least 1, got {boards}")
    if not gics or not set(gics) <= set(vmm.GIC_MACHINES):
        problems.append(f"--gic: each board's GIC is v2 or v3, got {list(gics)}")
    if lab_host not in LAB_HOSTS:
        problems.append(f"--lab-host must be one of {', '.join(LAB_HOSTS)}, got {lab_host!r}")
    elif lab_host == "vm":
        try:
            labhost_lab.adapters([str(i) for i in range(boards)],
                                 {f"{i}-{e}": "" for i in range(boards)
                                  for e in labhost_lab.ENDS})
        except ValueError as e:
            problems.append(str(e))
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append("the virtual lab needs root: its boards get a network namespace of "
                        "their own, its TFTP server binds port 69 (where U-Boot asks) in a "
                        "mount namespace, and its ssh drop-in goes to /etc/ssh/ssh_config.d")
    for path, what in ((QEMU, "qemu-system-arm"), (UBOOT, "u-boot-qemu"),
                       (TFTPD, "tftpd-hpa"), (SER2NET, "ser2net")):
        if not Path(path).exists():
            problems.append(f"{path} missing: run `hil firmware build` (it installs {what})")
    if (why := sshd.available()) is not None:
        problems.append(why)
    for tool in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client"):
        if not os.access(labgrid_tool(tool), os.X_OK):
            problems.append(f"{labgrid_tool(tool)} missing: reinstall hil (firmware/bootstrap)")
    return problems


# --- state shared between `up`, the supervisor and `down` -------------------------------------


@dataclass
class LabState:
    status: str  # starting | ready | failed | stopping
    pid: int
    coordinator: str = ""
    address: str = ""
    places: list[str] = field(default_factory=list)
    credentials: str = ""
    switch: str = ""  # the switch itself, on loopback: only the relay talks to it
    relay: str = ""  # the lab's power relay, which the exporter publishes
    metrics: str = ""  # the janitor's Prometheus endpoint
    lab_host: str = "local"
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> LabState | None:
        """The lab's state, or None: no lab, or a directory that is not a lab's own (its
        lab.json could be anyone's)."""
        if not is_lab_dir(directory):
            return None
        try:
            return cls(**json.loads((directory / "lab.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, directory: Path) -> None:
        tmp = directory / ".lab.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, directory / "lab.json")

    def exports(self) -> dict[str, str]:
        """What a client exports to use the lab (LG_PLACE: one of `places`)."""
        # No power credentials: the lab's relay holds them.
        return {"LG_COORDINATOR": self.coordinator,
                "LG_PLACE": self.places[0] if self.places else "",
                "HIL_LAB_METRICS": self.metrics}


# --- the supervisor ---------------------------------------------------------------------------


class Supervisor:
    def __init__(self, directory: Path, boards: int, credentials: str | None,
                 health_interval: float = 3600.0, lab_host: str = "local",
                 gics: Sequence[int] = GICS, listen: str = LOOPBACK):
        self.directory = directory
        self.logs = directory / "logs"
        self.ports = PortPool()
        self.plan = LabPlan(directory, boards, listen, self.ports.take(listen),
                            self.ports.take(listen), lab_host, tuple(gics))
        self.state = LabState("starting", os.getpid(), coordinator=self.plan.coordinator,
                              address=self.plan.address, lab_host=lab_host)
        self.labhost: labhost_lab.LabHost | None = None
        self.credentials = credentials
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cables: CableSet | None = None
        self.ssh: sshd.LabSSHServer | None = None
        self.hostlock = hostlock.HostLock()
        self.stop_requested = threading.Event()
        self.health_interval = health_interval
        self.janitor: Janitor | None = None
        self.coordinator: Coordinator | None = None
        self._died: dict[str, float] = {}
        # How each process was started (its working directory and environment), to start
        # it again the same way.
        self._how: dict[str, tuple[Path | None, dict[str, str] | None]] = {}

    def _spawn(self, name: str, cmd: Sequence[str], cwd: Path | None = None,
               env: dict[str, str] | None = None) -> None:
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                              **(env or {})})
        out.close()
        self._how[name] = (cwd, env)
        self.processes.append((name, proc))
        self.state.pids[name] = proc.pid

    def _alive(self, name: str) -> None:
        for n, proc in self.processes:
            if n == name and proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
                raise InfrastructureError(f"{name} exited ({proc.returncode}):\n{tail}")

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float, name: str) -> None:
        deadline = Timeout(float(timeout))
        while not ready():
            self._alive(name)
            if deadline.expired:
                raise InfrastructureError(f"{what} not ready within {timeout:.0f} s "
                                          f"(log: {self.logs / (name + '.log')})")
            time.sleep(0.2)

    def _credentials_file(self) -> str:
        if self.credentials:
            return self.credentials
        path = self.directory / "power-credentials"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"hil:{secrets.token_urlsafe(18)}\n")
        return str(path)

    def start(self) -> None:
        t0 = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        # Before anything host-wide: `up`'s preflight and this lock can race with a second
        # `up`; the lock decides.
        self.hostlock.acquire(self.directory)
        for other in sshd.remove_others(self.directory):
            log.info("removed the ssh drop-in that a lab killed outright left: %s", other)
        plan = self.plan
        self.state.credentials = self._credentials_file()
        self.cables = CableSet(self.directory / "cables", cable_names(plan))
        for b in plan.all_boards():
            Path(b.tftp_dir).mkdir(parents=True, exist_ok=True)

        ssh = self.ssh = sshd.LabSSHServer(self.directory / "ssh", plan.address,
                                           plan.sshd_port, self.directory)
        ssh.start(self.logs / "sshd.log")
        self._spawn("boardnet", boardnet.holder_command(self.directory))
        holder = self.state.pids["boardnet"]
        self._wait("the boards' network", lambda: netns.differs(holder), 10, "boardnet")
        boardnet.set_up(holder, boardnet.veth_name(self.directory))
        jail = self.directory / "tftpd-jail"
        # What staged symlinks point to: the images (a client on this host shares its files:
        # labgrid links to them), the artifacts they link to, and labgrid's copies.
        images = Path(os.environ.get("HIL_IMAGES", default_images()))
        shown = tftpd_jail.shown_paths(self.directory / "tftp", [
            images, default_root() / "artifacts", Path("/var/cache/labgrid")])
        self._spawn("tftpd", tftpd_jail.command(TFTPD, f"{boardnet.HOST_ADDRESS}:69", jail,
                                                shown, tftpd_jail.server_user()))
        self._spawn("coordinator", [labgrid_tool("labgrid-coordinator"), "--listen",
                                    plan.coordinator], cwd=self.directory)
        ready_file = self.directory / "switch.port"
        outlets = [f"--outlet={b.outlet}={shlex.join(boardnet.enter(holder, plan.qemu_command(b)))}"
                   for b in plan.all_boards()]
        # A fixed port, so that a restarted switch is where the relay says it is. On loopback
        # whatever --listen says: only the relay, beside it, talks to it.
        self._spawn("power-switch", [sys.executable, "-m", "hil.virtual_lab.power.switch", *outlets,
                                     "--port", str(self.ports.take()),
                                     "--credentials", self.state.credentials,
                                     "--ready-file", str(ready_file),
                                     "--log-dir", str(self.logs)])
        self._wait("power switch", ready_file.exists, 30, "power-switch")
        self.state.switch = f"http://127.0.0.1:{int(ready_file.read_text())}"
        relay_ready = self.directory / "relay.port"
        self._spawn("power-relay", [sys.executable, "-m", "hil.virtual_lab.power.relay",
                                    "--switch", self.state.switch,
                                    "--credentials", self.state.credentials,
                                    *(f"--outlet={b.outlet}" for b in plan.all_boards()),
                                    "--address", plan.address,
                                    "--port", str(self.ports.take(plan.address)),
                                    "--ready-file", str(relay_ready)])
        self._wait("power relay", relay_ready.exists, 30, "power-relay")
        self.state.relay = f"http://{plan.address}:{int(relay_ready.read_text())}"
        self._wait("ssh to the lab host", lambda: _succeeds(ssh.check), 15, "tftpd")
        self._alive("tftpd")
        self._wait("coordinator", lambda: _listening(plan.address, plan.coordinator_port), 30,
                   "coordinator")

        config = self.directory / "exporter.yaml"
        config.write_text(yaml.safe_dump(plan.exporter_config(
            self.cables.devices(), int(self.state.relay.rsplit(":", 1)[1]))))
        # The exporter finds ser2net on its PATH: first the one bound to the lab's address.
        wrapper = ser2net_bind.install(self.directory / "bin", plan.address, SER2NET)
        self._spawn("exporter", [labgrid_tool("labgrid-exporter"), "-c", plan.coordinator,
                                 "--name", EXPORTER, "--hostname", plan.address, str(config)],
                    env={"PATH": f"{wrapper.parent}:{os.environ.get('PATH', '')}"})
        names = [b.name for b in plan.all_boards()]
        exporters = [EXPORTER]
        wanted = {f"{EXPORTER}/{b}/{cls}" for b in names
                  for cls in ("NetworkPowerPort", "RemoteTFTPProvider")}
        if plan.lab_host == "vm":
            self.labhost = labhost_lab.LabHost(
                self.directory / "labhost", self.directory.name, names, self.cables.devices(),
                plan.coordinator_port, ssh, self.ports.take())
            self.state.timings["labhost_boot_s"] = round(self.labhost.start(), 2)
            self._wait("ssh to the lab-host VM", lambda: _succeeds(self.labhost.check_ssh)
                       if self.labhost else False, 60, "exporter")
            exporters.append(labhost_lab.EXPORTER)
            wanted |= labhost_lab.wanted_resources(names)
        else:
            wanted |= {f"{EXPORTER}/{b}/NetworkSerialPort" for b in names}
        try:
            coordinator = self.coordinator = Coordinator(plan.coordinator, purpose="lab")
        except CoordinatorUnreachable:
            # Something else may hold its port; if the coordinator exited, its log says why.
            self._alive("coordinator")
            raise
        for place in names:
            coordinator.create_place(place)
            for exp in exporters:
                coordinator.add_match(place, f"{exp}/{place}/*")
            coordinator.set_tags(place, plan.board(names.index(place)).tags)

        def exported() -> bool:
            have = {path.rsplit("/", 1)[0] for path in coordinator.resource_paths()}
            return wanted <= have

        try:
            self._wait("exporters' resources", exported, 120, "exporter")
        except InfrastructureError as e:
            if self.labhost is not None:
                raise InfrastructureError(f"{e}\nlab-host VM exporter: {self.labhost.log()}"
                                          ) from e
            raise
        self.state.places = [b.name for b in plan.all_boards()]
        # The janitor's health checks power the boards as any client does: through the relay.
        janitor = Coordinator(plan.coordinator, purpose="janitor", eager=True)
        metrics = LabMetrics(janitor.places, janitor.reservations)
        self.state.metrics = f"http://{plan.address}:{metrics.serve(plan.address, 0)}/metrics"
        self.janitor = Janitor(janitor, LAB_ENV, self.directory / "health",
                               interval=self.health_interval, metrics=metrics,
                               watch_address=plan.address)
        self.state.timings["up_s"] = round(time.monotonic() - t0, 2)
        self.state.status = "ready"
        self.state.write(self.directory)
        threading.Thread(target=self.janitor.run, name="janitor", daemon=True).start()

    # What a lab host's service manager restarts (systemd's Restart=always), and after how long.
    # The coordinator too: it comes back with its places and tags as last saved, and the
    # sessions take their places back (hil.scheduling.reservations).
    RESTART: ClassVar[dict[str, float]] = {"exporter": 3.0, "power-switch": 3.0,
                                           "power-relay": 3.0, "coordinator": 3.0}

    def watch(self) -> None:
        """Restart a lab process that died (killed by a test of losing it, or crashed)."""
        now = time.monotonic()
        for i, (name, proc) in enumerate(self.processes):
            if name not in self.RESTART or proc.poll() is None:
                continue
            died = self._died.setdefault(name, now)
            if now - died < self.RESTART[name]:
                continue
            log.info("%s exited (%s): restarting", name, proc.returncode)
            del self._died[name]
            self.processes.pop(i)
            if name == "power-switch":
                (self.directory / "switch.port").unlink(missing_ok=True)
                # A switch killed outright leaves its outlets' QEMUs (sessions of their own):
                # the restarted one would say "off" and start a second QEMU per board. Its
                # outlets come back off, as a PDU's do after it lost power.
                ended = end_boards(self.directory)
                if ended:
                    log.info("power switch restart: ended %d board QEMU(s) it left", ended)
            if name == "power-relay":
                (self.directory / "relay.port").unlink(missing_ok=True)
            if name == "exporter":
                self._end_orphaned_ser2net()
            cwd, env = self._how.get(name, (None, None))
            self._spawn(name, proc.args, cwd=cwd, env=env)  # type: ignore[arg-type]
            self.state.write(self.directory)
            return

    def stop(self) -> None:
        if self.janitor is not None:
            self.janitor.close()
        if self.coordinator is not None:
            self.coordinator.close()
        if self.labhost is not None:
            # Its exporter's resources go with it.
            self.labhost.stop()
        # The exporter first (clients see resources go), the switch next (its SIGTERM turns
        # every outlet off), then what they used.
        order = ["exporter", "power-relay", "power-switch", "coordinator", "tftpd", "boardnet"]
        for name in order:
            for n, proc in self.processes:
                if n == name and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(30 if name == "power-switch" else 10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        self._end_orphaned_ser2net()
        if self.ssh is not None:
            self.ssh.stop()
        if self.cables is not None:
            self.cables.close()
        self.hostlock.release()

    def _end_orphaned_ser2net(self) -> None:
        """ser2net of an exporter that was killed outright outlives it, holding the cables."""
        if self.cables is None:
            return
        devices = [f",{d}," for d in self.cables.devices().values()]
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if argv.startswith(SER2NET) and any(d in argv for d in devices):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGTERM)


def board_pids(directory: Path) -> list[int]:
    """The lab's board QEMUs still running: QEMU with a cable of `directory` on its command
    line (nsenter execs QEMU, so the command line is QEMU's own)."""
    cables = f"{directory}/cables/".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if argv.split(b"\0", 1)[0] == QEMU.encode() and cables in argv:
            found.append(int(proc.name))
    return found


def end_boards(directory: Path) -> int:
    """SIGKILL the lab's board QEMUs (pulling a board's power is no gentler); how many."""
    pids = board_pids(directory)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _succeeds(fn: Callable[[], None]) -> bool:
    try:
        fn()
    except (InfrastructureError, subprocess.TimeoutExpired):
        return False
    return True


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def supervise(directory: Path, boards: int, credentials: str | None,
              health_interval: float = 3600.0, lab_host: str = "local",
              gics: Sequence[int] = GICS, listen: str = LOOPBACK) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sup = Supervisor(directory, boards, credentials, health_interval, lab_host, gics, listen)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stop_requested.set())
    try:
        sup.state.write(directory)
        sup.start()
        log.info("lab ready in %.1f s: %s", sup.state.timings["up_s"], sup.state.places)
        while not sup.stop_requested.wait(1.0):
            sup.watch()
        sup.state.status = "stopping"
        sup.state.write(directory)
    except Exception as e:  # every failure ends in the state file, where `up` reads it
        sup.state.status = "failed"
        sup.state.reason = str(e)
        sup.state.write(directory)
        log.exception("lab failed")
    finally:
        sup.stop()
    return 0 if sup.state.status != "failed" else 1


# --- the commands -----------------------------------------------------------------------------


def up(directory: Path, boards: int, credentials: str | None = None,
       out: Callable[[str], None] = print, health_interval: float = 3600.0,
       wait_healthy: float = 0.0, lab_host: str = "local",
       gics: Sequence[int] = GICS, listen: str = LOOPBACK) -> LabState:
    problems = preflight(boards, lab_host=lab_host, gics=gics, listen=listen)
    if credentials is not None and not Path(credentials).is_file():
        problems.append(f"--credentials {credentials}: no such file")
    if problems:
        raise ConfigError("the virtual lab cannot start:\n  " + "\n  ".join(problems))
    directory = directory.absolute()  # the supervisor's command line names it so
    existing = LabState.read(directory)
    if existing is not None and _is_supervisor(existing.pid, directory):
        raise ConfigError(f"a lab already runs from {directory} (pid {existing.pid}): "
                          "`hil lab down` first, or give another --dir")
    claim_lab_dir(directory)
    t0 = time.monotonic()
    ready = Timeout(float(READY_TIMEOUT_S))
    log_path = directory / "supervisor.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hil.virtual_lab.supervisor", "supervise", str(directory),
             "--boards", str(boards), "--health-interval", str(health_interval),
             "--lab-host", lab_host, "--gic", ",".join(f"v{g}" for g in gics),
             "--listen", listen,
             *(["--credentials", credentials] if credentials else [])],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True)
    while True:
        state = LabState.read(directory)
        if state is not None and state.status in ("ready", "failed"):
            break
        if proc.poll() is not None or ready.expired:
            state = None
            break
        time.sleep(0.3)
    if state is None or state.status != "ready":
        reason = state.reason if state else f"see {log_path}"
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        proc.wait(60)
        raise InfrastructureError(f"the virtual lab did not come up: {reason}")
    host = state.address + (" and the lab-host VM (consoles)" if state.lab_host == "vm" else "")
    out(f"lab: {len(state.places)} places ready in {time.monotonic() - t0:.1f} s "
        f"({', '.join(state.places)}), coordinator {state.coordinator}, lab host {host}")
    for k, v in state.exports().items():
        out(f"export {k}={shlex.quote(v)}")
    if wait_healthy:
        try:
            healthy = wait_until_healthy(state, wait_healthy)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failed while waiting: nobody asked for a lab
            # that is not yet healthy to stay up.
            down(directory, out=out)
            raise
        state.timings["healthy_s"] = round(time.monotonic() - t0, 1)
        out(f"lab: health checks done in {state.timings['healthy_s']:.1f} s: "
            + ", ".join(f"{p} {h}" for p, h in healthy.items()))
    return state


def wait_until_healthy(state: LabState, timeout: float) -> dict[str, str]:
    """Wait for the janitor's first health check of every place, and for its sessions to
    release them (the verdict is tagged before the release ends); place -> health."""
    deadline = Timeout(float(timeout))
    with Coordinator(state.coordinator, purpose="lab-up") as coordinator:
        generation = coordinator.generation
        while True:
            places = coordinator.places()
            found = {p.name: p.tags.get(HEALTH_TAG, "unknown") for p in places}
            settled = all(h != "unknown" for h in found.values()) and not any(
                p.acquired for p in places)
            if settled or deadline.expired:
                return found
            generation = coordinator.wait_for_change(generation, 5.0)


# A lab directory holds this file from the moment `up` makes it: `up` and `down` delete only
# a directory that has it (and that this user owns, mode 0700, not a symlink), so a mistyped
# --dir or a directory planted in /tmp is never removed or trusted.
MARKER = ".hil-lab"


def lab_dir_problem(directory: Path, euid: int | None = None) -> str | None:
    """Why `directory` is not a lab directory this user may trust and delete; None if it is."""
    try:
        st = directory.lstat()
    except FileNotFoundError:
        return "no such directory"
    if directory.is_symlink():
        return "is a symbolic link, not a lab directory"
    if not directory.is_dir():
        return "is not a directory"
    if not (directory / MARKER).is_file():
        return (f"holds no {MARKER} marker: it is not a directory `hil lab up` made (give the "
                "lab's own --dir, or remove it yourself)")
    if st.st_uid != (os.geteuid() if euid is None else euid):
        return f"belongs to uid {st.st_uid}, not to this user"
    if st.st_mode & 0o077:
        return f"has mode {st.st_mode & 0o777:o}: others could have planted its files"
    return None


def is_lab_dir(directory: Path) -> bool:
    return lab_dir_problem(directory) is None


def claim_lab_dir(directory: Path) -> None:
    """Make `directory` a new, empty lab directory: mode 0700 with its marker. An earlier lab's
    directory is emptied; an empty directory of this user's is taken; anything else is refused."""
    if directory.exists() or directory.is_symlink():
        if is_lab_dir(directory):
            shutil.rmtree(directory)
        elif directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir()):
            if directory.stat().st_uid != os.geteuid():
                raise ConfigError(f"--dir {directory} belongs to another user: give another")
            directory.rmdir()
        else:
            raise ConfigError(f"--dir {directory}: {lab_dir_problem(directory)}; not touched")
    directory.parent.mkdir(parents=True, exist_ok=True)
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)  # whatever the umask
    (directory / MARKER).write_text(f"hil virtual lab, made by pid {os.getpid()}\n")


def _is_supervisor(pid: int, directory: Path) -> bool:
    """Whether `pid` is alive and is the supervisor of `directory` (its command line says so),
    not some other process that got the pid, or that a planted lab.json names."""
    if pid <= 1 or not _pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    want = [b"hil.virtual_lab.supervisor", b"supervise", str(directory).encode()]
    return any(argv[i:i + 3] == want for i in range(len(argv)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A supervisor that has ended but whose parent (a Python program that called `up()`,
    # such as the tests) has not reaped it yet is a zombie: gone, though kill(0) succeeds.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def down(directory: Path, out: Callable[[str], None] = print, timeout: float = 90) -> None:
    directory = directory.absolute()
    if not directory.exists() and not directory.is_symlink():
        out(f"lab: nothing runs from {directory}")
        return
    if (why := lab_dir_problem(directory)) is not None:
        raise ConfigError(f"{directory}: {why}; not touched")
    state = LabState.read(directory)
    if state is None:
        shutil.rmtree(directory)
        out(f"lab: nothing runs from {directory}")
        return
    # lab.json names a pid; only the supervisor this directory's `up` started is signalled.
    if _is_supervisor(state.pid, directory):
        os.kill(state.pid, signal.SIGTERM)
        deadline = Timeout(float(timeout))
        while _is_supervisor(state.pid, directory) and not deadline.expired:
            time.sleep(0.2)
        if _is_supervisor(state.pid, directory):
            # Its children share its process group (the boards' QEMUs have their own, and
            # the switch ends them on SIGTERM).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
    # A supervisor killed outright leaves its processes (the boards' QEMUs, sshd and the
    # lab-host VM run in sessions of their own) and its drop-in: end them all the same.
    ended = end_leftovers(directory)
    if ended:
        out("lab: ended what the supervisor left running: "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(ended.items())))
    sshd.dropin_path(directory).unlink(missing_ok=True)
    sshd.authorized_keys_path(directory).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    out(f"lab: stopped, {directory} removed")


def lab_processes(directory: Path) -> dict[int, str]:
    """pid -> kind of every process this lab started that is still running: those that name
    the lab directory in their command line (exporter, power switch, boards' QEMUs, tftpd,
    sshd, lab-host VM), the coordinator (which runs in it), and ser2net on the lab's cables."""
    cables: list[bytes] = []
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        config = yaml.safe_load((directory / "exporter.yaml").read_text()) or {}
        cables = [f",{res['port']},".encode() for group in config.values()
                  for res in group.values()
                  if isinstance(res, dict) and res.get("cls") == "RawSerialPort"]
    here = str(directory).encode()
    found: dict[int, str] = {}
    # Never this command or what started it (a shell script may name the directory too).
    spared = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in spared:
        spared.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in spared:
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if here in argv or cwd == str(directory) or (
                argv.startswith(SER2NET.encode()) and any(c in argv for c in cables)):
            words = argv.split(b"\0")
            # sshd retitles itself "sshd: /usr/sbin/sshd -D ... [listener] ...".
            name = Path((words[0].decode(errors="replace").split() or ["?"])[0].rstrip(":")).name
            if name.startswith("python") and b"-m" in words:
                name = words[words.index(b"-m") + 1].decode(errors="replace")
            elif name.startswith("python") and len(words) > 1:
                name = Path(words[1].decode(errors="replace")).name
            found[int(proc.name)] = name
    return found


def end_leftovers(directory: Path, grace: float = 5.0) -> dict[str, int]:
    """SIGTERM, then SIGKILL after `grace`, every process of the lab still running; kind ->
    how many."""
    found = lab_processes(directory)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = Timeout(float(grace))
    while any(_pid_alive(pid) for pid in found) and not deadline.expired:
        time.sleep(0.1)
    for pid in found:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    counts: dict[str, int] = {}
    for kind in found.values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.virtual_lab.supervisor")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("supervise")
    s.add_argument("directory", type=Path)
    s.add_argument("--boards", type=int, default=2)
    s.add_argument("--credentials")
    s.add_argument("--health-interval", type=float, default=3600.0)
    s.add_argument("--lab-host", choices=LAB_HOSTS, default="local")
    s.add_argument("--gic", type=gic_list, default=GICS)
    s.add_argument("--listen", default=LOOPBACK)
    args = ap.parse_args(argv)
    return supervise(args.directory, args.boards, args.credentials, args.health_interval,
                     args.lab_host, args.gic, args.listen)


if __name__ == "__main__":
    sys.exit(main())
