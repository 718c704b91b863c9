"""The lab-host VM's initramfs: busybox and the 9p modules, nothing else.

Stage 1 (/init, busybox) loads the 9p modules and builds the VM's root on a tmpfs: this
host's /usr read-only over virtio-9p (tag `hostusr`), an /etc of its own (tag `hostetc`: the
few files of this host's /etc that its tools read, copied by `etc_view`, never shadow, keys or
credentials), the merged-/usr links, and tmpfs everywhere else; then it switches to it.
Stage 2 (copied to /run, run by the host's own /bin/sh and tools) mounts the checkout, the venv
and its Python read-only at their own paths, loads the USB modules from the same kernel
package, starts the host's own systemd-udevd, triggers and settles, brings the network up and
leaves a shell on the serial console. The VM so has this host's python, venv, pyudev and labgrid
at the same paths, nothing needs debootstrap, and it sees nothing else of this host: not /root,
not /home, not the lab's directory, not /etc/shadow.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
from pathlib import Path

from hil.errors import InfrastructureError
from hil.firmware import kmod
from hil.firmware.cpio import CpioWriter
from hil.virtual_lab.labhost.packages import Kernel

BUSYBOX = Path("/bin/busybox")
USR_TAG = "hostusr"
ETC_TAG = "hostetc"
SHARE_TAG = "hilshare"
SHARE_MOUNT = "/mnt"  # exists in Debian's root, so the share needs no writable root
READY = "HIL-LABHOST-READY"
# Loaded from the initramfs, before the host's root is there.
EARLY_MODULES = ("netfs", "9pnet", "9pnet_virtio", "9p")
# Loaded by stage 2 with the host's modprobe (udev would load most of them itself).
LATE_MODULES = ("xhci_pci", "usbserial", "ftdi_sio", "virtio_net")

STAGE1 = f"""\
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "hil: insmod $m failed"; done
mkdir -p /newroot
mount -t tmpfs -o mode=755 root /newroot
cd /newroot
mkdir -p usr etc run tmp var/tmp var/lib var/log var/cache root mnt dev proc sys
chmod 1777 tmp
chmod 700 root
@ROOT_LINKS@
cd /
for share in "{USR_TAG} /newroot/usr" "{ETC_TAG} /newroot/etc"; do
    set -- $share
    if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 $1 $2; then
        echo "hil: cannot mount the host's $1 over 9p"; exec sh
    fi
done
mount -t tmpfs -o mode=755 run /newroot/run
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
cp /stage2 /newroot/run/hil-stage2
chmod 755 /newroot/run/hil-stage2
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /run/hil-stage2
"""

STAGE2 = f"""\
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8 TERM=dumb PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=1777 vartmp /var/tmp
ln -sf /proc/self/fd /dev/fd
if grep -qs {SHARE_TAG} /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; then
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {SHARE_TAG} {SHARE_MOUNT}
fi
@HOST_PATHS@
modprobe -a {" ".join(LATE_MODULES)}
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60
ip link set lo up
# QEMU's user network; udev has renamed the interface by now (ens4 or so).
nic=$(ls /sys/class/net | grep -vx lo | head -n 1)
if [ -n "$nic" ]; then
    ip addr add 10.0.2.15/24 dev "$nic"
    ip link set "$nic" up
    ip route add default via 10.0.2.2
fi
dmesg -n 1
stty -echo -onlcr
echo "{READY} $(cut -d' ' -f1 /proc/uptime)"
while true; do /bin/sh; done
"""


def module_order(kernel: Kernel, names: tuple[str, ...] = EARLY_MODULES) -> list[str]:
    """Module paths (relative to kernel.modules) to insmod, dependencies first."""
    deps = kmod.parse_modules_dep((kernel.modules / "modules.dep").read_text())
    builtin = kmod.parse_builtin((kernel.modules / "modules.builtin").read_text())
    try:
        return kmod.closure(deps, list(names), builtin)
    except KeyError as e:
        raise InfrastructureError(f"{kernel.release} has no module {e}") from e


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    # busybox insmod takes plain ELF modules only.
    return lzma.decompress(data) if path.name.endswith(".xz") else data


HOST_PATH_TAG = "hilpath{}"
# This host's top-level directories that merged /usr makes links (bin -> usr/bin, ...).
TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What of this host's /etc the VM's tools read: accounts without their hashes, the name
# service and loader configuration, the alternatives links, udev's and modprobe's rules.
ETC_ALLOWED = ("passwd", "group", "nsswitch.conf", "hosts", "hostname", "host.conf",
               "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "udev",
               "modprobe.d", "protocols", "services", "localtime", "os-release", "mtab",
               "environment", "shells", "profile", "bash.bashrc", "inputrc")


def root_links(root: Path = Path("/")) -> tuple[list[tuple[str, str]], list[Path]]:
    """(name, target) of each top-level link into /usr to recreate in the VM's root, and the
    top-level directories of a host without merged /usr, to share as they are."""
    links, dirs = [], []
    for name in TOP_LINKS:
        path = root / name
        if path.is_symlink():
            links.append((name, os.readlink(path)))
        elif path.is_dir():
            dirs.append(Path("/") / name)
    return links, dirs


def link_lines(links: list[tuple[str, str]]) -> str:
    return "\n".join(f"ln -s {target} {name}" for name, target in links)


def shared_host_paths(paths: list[Path]) -> list[Path]:
    """Of `paths` (the checkout, the venv, its Python, top-level dirs), those /usr does not
    hold, outermost only: each is shared read-only at its own path."""
    wanted = sorted({p for p in paths if not (p == Path("/usr") or p.is_relative_to("/usr"))})
    return [p for p in wanted if not any(q != p and p.is_relative_to(q) for q in wanted)]


def etc_view(dest: Path, source: Path = Path("/etc")) -> Path:
    """A copy of what the VM may see of `source` (ETC_ALLOWED), links kept as links."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ETC_ALLOWED:
        src = source / name
        if src.is_symlink():
            (dest / name).symlink_to(os.readlink(src))
        elif src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    # sshd takes an account without a shadow entry for a locked one: every account gets one
    # of its own here, with no password ("*": keys only), never this host's hashes.
    passwd = dest / "passwd"
    users = [line.split(":", 1)[0] for line in passwd.read_text().splitlines()
             if line.strip()] if passwd.is_file() else []
    shadow = dest / "shadow"
    shadow.write_text("".join(f"{u}:*:19000:0:99999:7:::\n" for u in users))
    shadow.chmod(0o600)
    return dest


def mount_lines(host_paths: list[Path]) -> str:
    return "\n".join(
        f"mkdir -p {p} && mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,"
        f"msize=512000 {HOST_PATH_TAG.format(i)} {p}" for i, p in enumerate(host_paths))


def build(kernel: Kernel, out: Path, host_paths: list[Path] | None = None) -> Path:
    """Write the initramfs to `out` (rebuilt only when its contents change); `host_paths`
    are mounted from the host's 9p shares `hilpath<i>` (see shared_host_paths)."""
    if not BUSYBOX.exists():
        raise InfrastructureError(f"{BUSYBOX} is missing (Debian's busybox-static)")
    buf = io.BytesIO()
    w = CpioWriter(buf)
    for d in ("/bin", "/dev", "/proc", "/sys", "/modules", "/newroot"):
        w.dir(d)
    w.chardev("/dev/console", 5, 1)
    w.copy("/bin/busybox", BUSYBOX, 0o755)
    w.file("/init", STAGE1.replace("@ROOT_LINKS@", link_lines(root_links()[0])).encode(), 0o755)
    stage2 = STAGE2.replace("@HOST_PATHS@", mount_lines(host_paths or []))
    w.file("/stage2", stage2.encode(), 0o755)
    names = []
    for rel in module_order(kernel):
        name = kmod.module_name(rel) + ".ko"
        w.file(f"/modules/{name}", _module_bytes(kernel.modules / rel))
        names.append(name)
    w.file("/modules/order", ("\n".join(names) + "\n").encode())
    w.close()
    data = buf.getvalue()
    if not out.exists() or hashlib.sha256(out.read_bytes()).digest() != hashlib.sha256(data).digest():
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out
