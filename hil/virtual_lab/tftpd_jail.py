"""The virtual lab's TFTP server: tftpd-hpa chrooted (`--secure`), as an unprivileged user, in
a mount namespace that shows it only what boards may load, read-only.

labgrid's TFTPProviderDriver stages each file as a symlink in the provider's directory, to the
client's own copy (on a shared filesystem, as the exporter host is this host) or to labgrid's
cache on the exporter host (/var/cache/labgrid). tftpd-hpa's `--secure` chroots into its
directory, where such a symlink would dangle. So the chroot is a directory of its own in which
each of those trees is bind-mounted, read-only, at its own absolute path: U-Boot asks for the
same absolute names, and the symlinks resolve, to nothing else. The server drops to the `tftp`
user (Debian's tftpd-hpa makes it) after binding port 69; the directories above each mount are
made world-searchable inside the chroot, so that user can reach files the lab's own 0700
directory would hide.
"""

from __future__ import annotations

import pwd
import shlex
from collections.abc import Sequence
from pathlib import Path

USERS = ("tftp", "nobody")  # the first that exists


def server_user() -> str:
    for name in USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise LookupError(f"none of the users {', '.join(USERS)} exists for the TFTP server")


def jail_script(jail: Path, shown: Sequence[Path], tftpd: Sequence[str]) -> str:
    """The shell that runs inside `unshare --mount`: mount each of `shown` read-only at its
    own path under `jail`, then exec `tftpd`."""
    lines = ["set -e"]
    for path in shown:
        inside = shlex.quote(f"{jail}{path}")
        lines += [f"mkdir -p -m 755 {inside}",
                  f"mount --bind {shlex.quote(str(path))} {inside}",
                  f"mount -o remount,bind,ro {inside}"]
    lines.append(f"exec {shlex.join(tftpd)}")
    return "\n".join(lines)


def command(binary: str, address: str, jail: Path, shown: Sequence[Path], user: str
            ) -> list[str]:
    """tftpd-hpa in the foreground on `address` (host:port), chrooted into `jail`."""
    tftpd = [binary, "--listen", "--foreground", "--secure", "--address", address,
             "--user", user, str(jail)]
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", jail_script(jail, shown, tftpd)]


def shown_paths(tftp_dir: Path, caches: Sequence[Path]) -> list[Path]:
    """The lab's TFTP directory and each cache that exists, each once (none inside another)."""
    paths: list[Path] = []
    for p in sorted({tftp_dir.resolve(), *(c.resolve() for c in caches if c.is_dir())},
                    key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(q) for q in paths):
            paths.append(p)
    return paths
