import io
import re
import struct

import pytest

from hil.errors import InfrastructureError
from hil.firmware import apt, cpio, elf, kmod
from hil.firmware.cache import Store, digest

PRINT_URIS = """\
Reading package lists...
'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1%3a1.35.0-4%2bdeb12u1%2bb1_arm64.deb' busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb 822236 MD5Sum:49b1dbf1d63fbb662fb329033600c6ca
'http://deb.debian.org/debian-security/pool/updates/main/l/linux-6.12/linux-image-6.12.117%2bdeb12-arm64-unsigned_6.12.117-1%7edeb12u1_arm64.deb' linux-image-6.12.117+deb12-arm64-unsigned_6.12.117-1~deb12u1_arm64.deb 93041964
"""


def test_print_uris_with_and_without_checksums():
    debs = apt.parse_print_uris(PRINT_URIS)
    assert [d.package for d in debs] == ["busybox-static", "linux-image-6.12.117+deb12-arm64-unsigned"]
    assert debs[0].version == "1:1.35.0-4+deb12u1+b1" and debs[0].checksum.startswith("MD5Sum:")
    assert debs[1].size == 93041964 and debs[1].checksum == ""


def test_newest_kernel_compares_numbers_not_strings():
    names = ["linux-image-6.12.95+deb12-arm64-unsigned", "linux-image-6.12.117+deb12-arm64-unsigned",
             "linux-image-6.12.117+deb12-cloud-arm64-unsigned"]
    rx = r"linux-image-6\.12\.(\d+)\+deb12-arm64-unsigned"
    assert apt.newest_package(names, rx) == "linux-image-6.12.117+deb12-arm64-unsigned"
    with pytest.raises(InfrastructureError, match="no package"):
        apt.newest_package([], rx)


MODULES_DEP = """\
kernel/drivers/vhost/vhost_net.ko.xz: kernel/drivers/net/tun.ko.xz kernel/drivers/vhost/vhost.ko.xz kernel/drivers/vhost/vhost_iotlb.ko.xz kernel/drivers/net/tap.ko.xz
kernel/drivers/vhost/vhost.ko.xz: kernel/drivers/vhost/vhost_iotlb.ko.xz
kernel/drivers/vhost/vhost_iotlb.ko.xz:
kernel/drivers/net/tun.ko.xz:
kernel/drivers/net/tap.ko.xz:
"""


def test_module_closure_puts_dependencies_first_and_skips_builtins():
    deps = kmod.parse_modules_dep(MODULES_DEP)
    order = kmod.closure(deps, ["vhost-net", "virtio_console"], {"virtio_console"})
    names = [kmod.module_name(p) for p in order]
    assert names[-1] == "vhost_net" and set(names) == {"vhost_net", "tun", "vhost", "vhost_iotlb", "tap"}
    assert names.index("vhost_iotlb") < names.index("vhost")
    with pytest.raises(KeyError):
        kmod.closure(deps, ["nonexistent"], set())


def _read_cpio(blob: bytes) -> dict[str, tuple[int, bytes]]:
    out, pos = {}, 0
    while True:
        assert blob[pos:pos + 6] == b"070701"
        f = [int(blob[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize, mode = f[11], f[6], f[1]
        name = blob[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = blob[pos: pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data)


def test_cpio_newc_round_trip_with_parents_devices_and_symlinks():
    buf = io.BytesIO()
    w = cpio.CpioWriter(buf)
    w.chardev("/dev/console", 5, 1)
    w.file("/etc/hil/modules", b"tun\n", 0o644)
    w.symlink("/bin/sh", "busybox")
    w.close()
    blob = buf.getvalue()
    assert len(blob) % 512 == 0
    entries = _read_cpio(blob)
    assert entries["etc/hil/modules"] == (0o100644, b"tun\n")
    assert entries["bin/sh"] == (0o120777, b"busybox")
    assert entries["dev/console"][0] == 0o020600
    assert "etc" in entries and "etc/hil" in entries and "dev" in entries


def test_readelf_parsing():
    dyn = " 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n"
    assert elf.parse_needed(dyn) == ["libc.so.6"]
    assert elf.parse_interpreter("      [Requesting program interpreter: /lib/ld-linux-aarch64.so.1]") == \
        "/lib/ld-linux-aarch64.so.1"
    assert elf.parse_interpreter("static") is None


def test_store_publishes_atomically_and_hits_by_key(tmp_path):
    store = Store(tmp_path)
    key = digest(["recipe"])
    assert store.lookup("img", key) is None

    def build(d):
        (d / "Image").write_bytes(struct.pack("<I", 7))
        return {"kernel": "x"}

    out = store.build("img", key, build)
    assert store.lookup("img", key) == out
    link = store.publish("img", out)
    assert link.resolve() == out.resolve()
    manifest = (out / "manifest.json").read_text()
    assert '"Image"' in manifest and '"sha256"' in manifest and '"kernel": "x"' in manifest
    assert digest(["a", "b"]) != digest(["ab"])


def test_interrupted_build_is_not_a_hit(tmp_path):
    store = Store(tmp_path)

    def broken(d):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.build("img", "k" * 64, broken)
    assert store.lookup("img", "k" * 64) is None


def test_old_builds_are_pruned_but_the_newest_kept(tmp_path):
    store = Store(tmp_path)
    outs = [store.build("img", str(i) * 64, lambda d: {}) for i in range(4)]
    left = sorted(p.name for p in (tmp_path / "artifacts").iterdir())
    assert outs[-1].name in left and outs[-2].name in left and len(left) == 2


def test_pruning_one_artefact_leaves_another_whose_name_it_prefixes(tmp_path):
    from hil.firmware.cache import Store

    store = Store(tmp_path)
    debug = store.build("guest-kernel-debug", "a" * 64, lambda d: {})
    for key in ("b", "c", "d"):
        store.build("guest-kernel", key * 64, lambda d: {})
    assert debug.is_dir()
    names = [p.name for p in (tmp_path / "artifacts").iterdir()]
    assert len([n for n in names if re.fullmatch(r"guest-kernel-[0-9a-f]{16}", n)]) == 2
