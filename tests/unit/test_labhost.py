"""The lab-host VM's pure parts: adapters, QEMU's command line, the initramfs, the console."""

from __future__ import annotations

import lzma
import re
import socket
import threading
from pathlib import Path

import pytest

from hil.virtual_lab.labhost import initramfs
from hil.virtual_lab.labhost.__main__ import parse_adapter
from hil.virtual_lab.labhost.console import Console
from hil.virtual_lab.labhost.packages import Kernel
from hil.virtual_lab.labhost.vm import Adapter, LabHostVM


def test_id_path_names_the_xhci_port() -> None:
    assert Adapter("A", 3, "null").id_path == "pci-0000:00:10.0-usb-0:3:1.0"


@pytest.mark.parametrize("adapters, message", [
    ([Adapter("A", 1, "null"), Adapter("B", 1, "null")], "two adapters on one xHCI port"),
    ([Adapter("A", 5, "null")], "port 5 is not 1-4"),
    ([Adapter("A,x", 1, "null")], "no commas"),
    ([Adapter("", 1, "null")], "no commas"),
])
def test_bad_adapters_are_refused(tmp_path: Path, adapters: list[Adapter], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabHostVM(tmp_path, adapters)


def test_command_line(tmp_path: Path) -> None:
    kernel = Kernel("6.12.1+deb12-amd64", tmp_path / "vmlinuz", tmp_path / "modules")
    vm = LabHostVM(tmp_path, [Adapter("HILBRD01", 2, "socket,path=/tmp/b1"),
                              Adapter("HILDUP01", 1, "file,path=/tmp/d")],
                   hostfwd=["tcp:127.0.0.1:2000-:22"])
    cmd = vm.command(kernel, tmp_path / "initrd")
    assert cmd[:4] == ["nice", "-n", "10", "qemu-system-x86_64"]
    assert "accel=tcg" in cmd[cmd.index("-machine") + 1]
    devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    # The controller first, at its fixed slot, so ID_PATH is known before boot.
    assert devices[0].startswith("qemu-xhci,id=xhci,addr=0x10")
    assert "usb-serial,bus=xhci.0,port=2,chardev=usb0,serial=HILBRD01" in devices
    assert "usb-serial,bus=xhci.0,port=1,chardev=usb1,serial=HILDUP01" in devices
    assert "socket,path=/tmp/b1,id=usb0" in cmd and "file,path=/tmp/d,id=usb1" in cmd
    assert "user,id=net0,hostfwd=tcp:127.0.0.1:2000-:22" in cmd
    virtfs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-virtfs"]
    # Never this host's root: /usr and the VM's own view of /etc, read-only.
    assert not any("path=/," in v for v in virtfs)
    assert any("path=/usr," in v and "readonly=on" in v for v in virtfs)
    assert any(f"path={tmp_path / 'etc'}," in v and "readonly=on" in v for v in virtfs)


def test_parse_adapter() -> None:
    assert parse_adapter("HILBRD01:2") == Adapter("HILBRD01", 2, "")
    assert parse_adapter("X:1:socket,path=/a") == Adapter("X", 1, "socket,path=/a")
    with pytest.raises(Exception, match="SERIAL:PORT"):
        parse_adapter("HILBRD01")


def _cpio(data: bytes) -> dict[str, bytes]:
    """name -> contents of a newc archive."""
    out, pos = {}, 0
    while True:
        hdr = data[pos:pos + 110]
        assert hdr[:6] == b"070701"
        size, namesize = int(hdr[54:62], 16), int(hdr[94:102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = data[pos:pos + size]
        pos = (pos + size + 3) & ~3


def test_initramfs_has_the_9p_modules_dependencies_first(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for Debian's busybox-static, which the lab-host tests install: this case
    # reads the modules' order, not the shell, and must not skip on a new machine.
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    monkeypatch.setattr(initramfs, "BUSYBOX", busybox)
    mods = tmp_path / "modules"
    deps = {
        "kernel/fs/netfs/netfs.ko.xz": [],
        "kernel/net/9p/9pnet.ko.xz": ["kernel/fs/netfs/netfs.ko.xz"],
        "kernel/net/9p/9pnet_virtio.ko.xz": ["kernel/net/9p/9pnet.ko.xz",
                                             "kernel/fs/netfs/netfs.ko.xz"],
        "kernel/fs/9p/9p.ko.xz": ["kernel/net/9p/9pnet.ko.xz", "kernel/fs/netfs/netfs.ko.xz"],
    }
    for rel in deps:
        (mods / rel).parent.mkdir(parents=True, exist_ok=True)
        (mods / rel).write_bytes(lzma.compress(f"ELF {rel}".encode(), format=lzma.FORMAT_XZ))
    (mods / "modules.dep").write_text("".join(f"{k}: {' '.join(v)}\n" for k, v in deps.items()))
    (mods / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    out = initramfs.build(Kernel("6.12.1+deb12-amd64", tmp_path / "vmlinuz", mods),
                          tmp_path / "initrd.cpio")
    files = _cpio(out.read_bytes())
    order = files["modules/order"].decode().split()
    assert order[0] == "netfs.ko" and order.index("9pnet.ko") < order.index("9p.ko")
    assert set(order) == {"netfs.ko", "9pnet.ko", "9pnet_virtio.ko", "9p.ko"}
    assert files["modules/9p.ko"] == b"ELF kernel/fs/9p/9p.ko.xz"  # decompressed for insmod
    init = files["init"].decode()
    # The VM's root is a tmpfs with this host's /usr and a view of /etc, not this host's root.
    assert "mount -t tmpfs -o mode=755 root /newroot" in init
    assert f"{initramfs.USR_TAG} /newroot/usr" in init and f"{initramfs.ETC_TAG} /newroot/etc" in init
    assert "hostroot" not in init and "@ROOT_LINKS@" not in init
    assert initramfs.READY in files["stage2"].decode()


def _fake_shell(server: socket.socket, rc: int, output: str) -> None:
    conn, _ = server.accept()
    with conn:
        line = b""
        while not line.endswith(b"\n"):
            line += conn.recv(4096)
        conn.sendall(line.replace(b"\n", b"\r\n"))  # a console that echoes what is typed
        tag = re.search(rb"HIL_B''EGIN_([0-9a-f]+)", line)
        assert tag
        t = tag[1]
        conn.sendall(b"HIL_BEGIN_" + t + b"\r\n" + output.encode().replace(b"\n", b"\r\n")
                     + b"HIL_END_" + t + b"=" + str(rc).encode() + b"\r\n")
        conn.recv(1)


def test_console_run_frames_output_and_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    t = threading.Thread(target=_fake_shell, args=(server, 3, "line one\nHIL_END_x=0\n"))
    t.start()
    console = Console(path, connect_timeout=5)
    try:
        r = console.run("false", timeout=10)
    finally:
        console.close()
        t.join(5)
        server.close()
    assert (r.rc, r.output) == (3, "line one\nHIL_END_x=0\n")
    with pytest.raises(Exception, match="exited 3"):
        r.check()
    with pytest.raises(ValueError):
        Console.run(console, "a\nb")


def test_the_checkout_venv_and_python_are_shared_into_the_vm_at_their_own_paths() -> None:
    from hil.virtual_lab.labhost.initramfs import mount_lines, shared_host_paths

    # A CI clone in /tmp with its venv inside, a pyenv Python: two shares; /usr holds Debian's.
    assert shared_host_paths([Path("/tmp/ci/p"), Path("/tmp/ci/p/.venv"),
                              Path("/root/.pyenv/versions/3.11.7")]) \
        == [Path("/root/.pyenv/versions/3.11.7"), Path("/tmp/ci/p")]
    assert shared_host_paths([Path("/work/main"), Path("/work/main/.venv"), Path("/usr")]) \
        == [Path("/work/main")]
    line = mount_lines([Path("/tmp/ci/p")])
    assert line.startswith("mkdir -p /tmp/ci/p && mount -t 9p") and line.endswith(
        "hilpath0 /tmp/ci/p")


def test_the_vm_sees_no_secret_of_this_hosts_etc(tmp_path: Path) -> None:
    from hil.virtual_lab.labhost.initramfs import etc_view

    etc = tmp_path / "etc"
    (etc / "udev" / "rules.d").mkdir(parents=True)
    (etc / "udev" / "rules.d" / "99-x.rules").write_text("x")
    (etc / "ssh").mkdir()
    (etc / "ssh" / "ssh_host_ed25519_key").write_text("PRIVATE")
    for name in ("passwd", "group", "shadow", "gshadow", "hil-power-credentials"):
        (etc / name).write_text(name)
    (etc / "mtab").symlink_to("../proc/self/mounts")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n")
    (etc / "shadow").write_text("root:$y$HASH:19000:0:99999:7:::\n")
    view = etc_view(tmp_path / "view", etc)
    assert sorted(p.name for p in view.iterdir()) == ["group", "mtab", "passwd", "shadow", "udev"]
    # A shadow of its own: every account, no password, none of this host's hashes.
    assert (view / "shadow").read_text() == ("root:*:19000:0:99999:7:::\n"
                                             "sshd:*:19000:0:99999:7:::\n")
    assert (view / "udev" / "rules.d" / "99-x.rules").read_text() == "x"
    assert str((view / "mtab").readlink()) == "../proc/self/mounts"


def test_merged_usr_links_are_made_again_in_the_vms_root(tmp_path: Path) -> None:
    from hil.virtual_lab.labhost.initramfs import link_lines, root_links

    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "lib64").mkdir()  # a host whose lib64 is a directory: shared as it is
    links, dirs = root_links(tmp_path)
    assert links == [("bin", "usr/bin")] and dirs == [Path("/lib64")]
    assert link_lines(links) == "ln -s usr/bin bin"
