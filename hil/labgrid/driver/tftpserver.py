"""A TFTP server (tftpd-hpa) for a TFTPProvider on this host, run only while it is active.

labgrid's TFTPProviderDriver stages files as symlinks in the provider's `internal` directory
and expects a server to be there already. For the virtual lab, hil runs that server itself,
only while U-Boot loads, so nothing is configured system-wide and nothing outlives the session.
It listens on this host's primary address (see TFTPServerDriver) and, without `--secure`,
serves any absolute path its user can read: on a host with an open network, run the virtual
U-Boot board behind a firewall or give the server its own user.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from typing import Any, ClassVar

import attr
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.step import step

from hil.errors import InfrastructureError


def primary_ipv4() -> str:
    """This host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        addr: str = s.getsockname()[0]
    return addr


def resolve_address(address: str, primary: str) -> tuple[str, str]:
    """(host, host:port) for `address`; host `auto` is this host's primary address."""
    host, _, port = address.rpartition(":")
    host = primary if host == "auto" else host
    return host, f"{host}:{port}"


def server_command(binary: str, address: str, root: str, user: str) -> list[str]:
    """tftpd-hpa in the foreground, serving `root`.

    Not `--secure`: that chroots into `root`, where the staged symlinks (to the image cache)
    would dangle. Without it tftpd-hpa only accepts absolute names under `root`, so the
    provider's `external` must equal its `internal`.
    """
    return [binary, "--listen", "--foreground", "--address", address, "--user", user, root]


@target_factory.reg_driver
@attr.s(eq=False)
class TFTPServerDriver(Driver):  # type: ignore[misc]
    """Runs tftpd-hpa on `address` for the bound TFTPProvider's directory.

    `address` is host:port; host `auto` takes this host's primary address, for boards on QEMU
    user networking: its slirp answers TFTP to its own host alias (10.0.2.2:69) itself, with
    "Access violation" when it has no tftp= directory, so U-Boot must ask a real address,
    which slirp forwards through its gateway. `host` is the address the server listens on.
    """

    bindings: ClassVar[dict[str, Any]] = {"provider": "TFTPProvider"}

    address: str = attr.ib(default="127.0.0.1:69")
    binary: str = attr.ib(default="/usr/sbin/in.tftpd")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.process: subprocess.Popen[bytes] | None = None
        self.host = ""

    def on_activate(self) -> None:
        root = self.provider.internal
        if os.path.normpath(root) != os.path.normpath(self.provider.external):
            raise InfrastructureError(
                f"TFTPProvider: external ({self.provider.external}) must equal internal "
                f"({root}): tftpd-hpa serves absolute names")
        if not os.access(self.binary, os.X_OK):
            raise InfrastructureError(f"{self.binary} missing: run `hil firmware build` "
                                      "(it installs tftpd-hpa)")
        os.makedirs(root, exist_ok=True)
        self.start(root)

    def listen_address(self) -> tuple[str, str]:
        """(host, host:port) the server listens on, known before it starts."""
        return resolve_address(
            self.address, primary_ipv4() if self.address.startswith("auto:") else "")

    @step(args=["root"])
    def start(self, root: str) -> None:
        self.host, address = self.listen_address()
        cmd = server_command(self.binary, address, root, getpass.getuser())
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tftpd-hpa exits at once when it cannot bind: give it that moment to fail.
        time.sleep(0.3)
        if self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            self.process = None
            raise InfrastructureError(
                f"tftpd-hpa could not serve {root} on {address}: {err.strip()} "
                "(another TFTP server on that port? only one U-Boot virtual board runs at a time)")

    def on_deactivate(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
