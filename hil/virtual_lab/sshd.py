"""The virtual lab host's SSH server: how labgrid clients put files on an exporter's host.

labgrid copies what a place's `RemoteTFTPProvider` serves over SSH to the exporter's host
(`ManagedFile`, through the system `ssh` with no way to pass a port or a key), as it does in
every real lab. The virtual lab runs its own OpenSSH server on the exporter's address and a
free port, with a key pair made for the lab, and tells the system `ssh` about both in a
drop-in under /etc/ssh/ssh_config.d (Debian's ssh_config includes that directory) that
`hil lab down` removes. The user's own keys and ~/.ssh are never touched.
"""

from __future__ import annotations

import getpass
import hashlib
import shutil
import subprocess
from pathlib import Path

from hil.errors import InfrastructureError

SSHD = "/usr/sbin/sshd"
DROPIN_DIR = Path("/etc/ssh/ssh_config.d")


def server_config(directory: Path, address: str, port: int, user: str,
                  authorized_keys: Path | None = None) -> str:
    return "\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {directory / 'host_ed25519'}",
        f"AuthorizedKeysFile {authorized_keys or directory / 'authorized_keys'}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # sshd refuses keys in a file that anyone else could have written, or under a
        # directory they could write (the lab directory may sit in /tmp: its keys do not).
        "StrictModes yes",
        f"PidFile {directory / 'sshd.pid'}",
        "",
    ])


def host_block(directory: Path, host: str, port: int, user: str,
               hostname: str | None = None) -> str:
    """How the system ssh reaches one lab host with the lab's key pair; `hostname` when `host`
    is a name known only to the lab (the lab-host VM behind a QEMU forward)."""
    return "\n".join([
        f"Host {host}",
        *([f"  HostName {hostname}"] if hostname else []),
        f"  Port {port}",
        f"  User {user}",
        f"  IdentityFile {directory / 'id_ed25519'}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {directory / 'known_hosts'}",
        "  StrictHostKeyChecking yes",
        "",
    ])


def client_dropin(directory: Path, address: str, port: int, user: str) -> str:
    return "\n".join([
        f"# Written by `hil lab up` for the virtual lab in {directory.parent};",
        "# `hil lab down` removes it.",
        host_block(directory, address, port, user),
    ])


def lab_key(lab_directory: Path) -> str:
    """The lab's name in files shared by every lab of this host: its directory's name, and a
    hash of its whole path, so that `hil lab down` of one lab never removes another's files."""
    path = str(lab_directory.resolve())
    return f"{lab_directory.name}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def dropin_path(lab_directory: Path) -> Path:
    return DROPIN_DIR / f"hil-lab-{lab_key(lab_directory)}.conf"


def authorized_keys_path(lab_directory: Path) -> Path:
    """Beside the drop-in, in root's /etc/ssh: StrictModes checks every directory above the
    file, and /tmp, where a lab directory may be, is writable by all."""
    return DROPIN_DIR.parent / f"hil-lab-{lab_key(lab_directory)}.authorized_keys"


def remove_others(lab_directory: Path) -> list[str]:
    """Remove every other lab's drop-in and authorized keys; returns the labs they named. Only
    for a lab that holds the host lock (`hostlock`): then no other lab runs here, and what is
    left was left by labs killed outright, whose `Host` blocks would shadow this lab's."""
    mine = {dropin_path(lab_directory), authorized_keys_path(lab_directory)}
    named: list[str] = []
    for path in sorted(DROPIN_DIR.glob("hil-lab-*.conf")) + sorted(
            DROPIN_DIR.parent.glob("hil-lab-*.authorized_keys")):
        if path in mine:
            continue
        if path.suffix == ".conf":
            first = path.read_text(errors="replace").partition("\n")[0]
            named.append(first.rsplit(" in ", 1)[-1].rstrip(";") if " in " in first
                         else path.name)
        path.unlink(missing_ok=True)
    return named


class LabSSHServer:
    """sshd on `address:port` for the current user, keys in `directory`."""

    def __init__(self, directory: Path, address: str, port: int, lab_directory: Path):
        self.directory = directory
        self.address = address
        self.port = port
        self.user = getpass.getuser()
        self.dropin = dropin_path(lab_directory)
        self.authorized_keys = authorized_keys_path(lab_directory)
        self.process: subprocess.Popen[bytes] | None = None

    def _keygen(self, path: Path) -> str:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hil-lab",
                        "-f", str(path)], check=True)
        return path.with_suffix(".pub").read_text().strip()

    def start(self, log: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        host_pub = self._keygen(self.directory / "host_ed25519")
        user_pub = self._keygen(self.directory / "id_ed25519")
        (self.directory / "authorized_keys").write_text(user_pub + "\n")  # for the lab-host VM
        self.authorized_keys.write_text(user_pub + "\n")
        self.authorized_keys.chmod(0o600)
        # Known hosts are keyed by "[address]:port" for a port other than 22.
        (self.directory / "known_hosts").write_text(f"[{self.address}]:{self.port} {host_pub}\n")
        config = self.directory / "sshd_config"
        config.write_text(server_config(self.directory, self.address, self.port, self.user,
                                        self.authorized_keys))
        # Privilege separation needs this directory; a host without a running sshd lacks it.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise InfrastructureError(f"sshd refuses the lab's configuration: {check.stderr}")
        self.dropin.write_text(client_dropin(self.directory, self.address, self.port, self.user))
        with open(log, "ab") as out:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                            stdout=out, stderr=out, start_new_session=True)

    def add_alias(self, alias: str, hostname: str, port: int, user: str) -> None:
        """Let the system ssh reach another lab host by `alias` with the lab's key pair; that
        host serves the lab's host key (host_ed25519)."""
        host_pub = (self.directory / "host_ed25519.pub").read_text().strip()
        with open(self.directory / "known_hosts", "a") as f:
            f.write(f"[{hostname}]:{port} {host_pub}\n")
        with open(self.dropin, "a") as f:
            f.write(host_block(self.directory, alias, port, user, hostname))

    def check(self, host: str | None = None, timeout: float = 10) -> None:
        """One command over the same path labgrid takes (the system ssh and its config)."""
        host = host or self.address
        q = subprocess.run(["ssh", "-o", "BatchMode=yes", host, "true"],
                           capture_output=True, text=True, timeout=timeout)
        if q.returncode != 0:
            raise InfrastructureError(
                f"ssh to the lab host {host} fails: {q.stderr.strip()} "
                f"(does ~/.ssh/config set Port or IdentityFile for every host? {self.dropin} "
                "comes after it)")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.dropin.unlink(missing_ok=True)
        self.authorized_keys.unlink(missing_ok=True)


def available() -> str | None:
    """Why the lab cannot run its SSH server here, or None."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        return f"{SSHD} or ssh missing: run `hil firmware build` (it installs openssh-server)"
    if not DROPIN_DIR.is_dir():
        return f"{DROPIN_DIR} missing: this host's ssh does not read drop-ins"
    return None
