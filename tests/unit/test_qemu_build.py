"""The QEMU build's pure decisions: source pin, cache key, configure options, ELF check."""

from pathlib import Path

import pytest

from hil.errors import ConfigError, InfrastructureError
from hil.firmware import qemu

SHA = "0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1"
PIN = qemu.Pin(SHA, "qemu_10.0.2+ds.orig.tar.xz")


def _series(tmp_path: Path, *names: str) -> list[Path]:
    d = tmp_path / "patches"
    d.mkdir(exist_ok=True)
    for n in names:
        if not (d / n).exists():
            (d / n).write_text(f"Subject: {n}\n")
    return qemu.patch_files(d)


def _inputs(tmp_path: Path, **over: object) -> qemu.KeyInputs:
    mod = tmp_path / "qemu.py"
    if not mod.exists():
        mod.write_text("# module\n")
    base: dict[str, object] = {
        "target": qemu.ARM64,
        "pin": PIN,
        "toolchain": "aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0; 1.7.0",
        "libraries": "libfdt-dev:amd64=1.6.1-4+b1",
        "patches": _series(tmp_path, "0001-a.patch", "0002-b.patch"),
        "module": mod,
    }
    base.update(over)
    return qemu.KeyInputs(**base)  # type: ignore[arg-type]


def test_repository_pin_and_series_are_well_formed() -> None:
    pin = qemu.read_pin()
    assert pin.filename == "qemu_10.0.2+ds.orig.tar.xz"
    patches = qemu.patch_files(qemu.PATCHES)
    assert patches, "firmware/qemu/patches is empty"
    for p in patches:
        text = p.read_text()
        assert "Signed-off-by: hil project <hil@example.invalid>" in text
        assert text.startswith("From ")


def test_pin_parses_sha256sum_format() -> None:
    assert qemu.parse_pin(f"# pinned\n{SHA}  qemu_10.0.2+ds.orig.tar.xz\n") == PIN
    assert qemu.parse_pin(f"{SHA} *qemu_10.0.2+ds.orig.tar.xz") == PIN


@pytest.mark.parametrize("text", [
    "",
    f"{SHA[:-1]}  qemu.tar.xz",
    f"{SHA.upper()}  qemu.tar.xz",
    f"{SHA}  a.tar.xz\n{SHA}  b.tar.xz",
])
def test_bad_pins_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        qemu.parse_pin(text)


def test_missing_pin_file_says_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pins the sha256"):
        qemu.read_pin(tmp_path / "source.sha256")


def test_sha256_mismatch_is_an_infrastructure_error() -> None:
    qemu.check_sha256(PIN, SHA)
    with pytest.raises(InfrastructureError, match="different QEMU source"):
        qemu.check_sha256(PIN, "0" * 64)


def test_stamp_is_valid_only_for_the_same_file() -> None:
    stamp = qemu.stamp_text(PIN, 39449628, 123)
    assert qemu.stamp_is_current(stamp, PIN, 39449628, 123)
    assert not qemu.stamp_is_current(None, PIN, 39449628, 123)
    assert not qemu.stamp_is_current(stamp, PIN, 39449628, 124)
    assert not qemu.stamp_is_current(stamp, PIN, 1, 123)
    assert not qemu.stamp_is_current(stamp, qemu.Pin("1" * 64, PIN.filename), 39449628, 123)


def test_key_is_stable(tmp_path: Path) -> None:
    assert qemu.cache_key(_inputs(tmp_path)) == qemu.cache_key(_inputs(tmp_path))


@pytest.mark.parametrize("change", [
    {"target": qemu.X86},
    {"pin": qemu.Pin("1" * 64, PIN.filename)},
    {"toolchain": "aarch64-linux-gnu-gcc 13; 1.7.0"},
    {"libraries": "libfdt-dev:amd64=1.7.0-1"},
    {"patches": []},
])
def test_key_follows_inputs(tmp_path: Path, change: dict[str, object]) -> None:
    assert qemu.cache_key(_inputs(tmp_path)) != qemu.cache_key(_inputs(tmp_path, **change))


def test_key_follows_file_contents(tmp_path: Path) -> None:
    before = qemu.cache_key(_inputs(tmp_path))
    (tmp_path / "patches" / "0002-b.patch").write_text("changed\n")
    after_patch = qemu.cache_key(_inputs(tmp_path))
    (tmp_path / "qemu.py").write_text("# changed\n")
    after_module = qemu.cache_key(_inputs(tmp_path))
    assert len({before, after_patch, after_module}) == 3


def test_key_does_not_depend_on_where_the_store_is(tmp_path: Path) -> None:
    parts = qemu.key_parts(_inputs(tmp_path))
    assert not any(isinstance(p, str) and str(tmp_path) in p for p in parts)


def test_series_id_follows_names_and_contents(tmp_path: Path) -> None:
    patches = _series(tmp_path, "0001-a.patch")
    first = qemu.series_id(patches)
    assert qemu.series_id(patches) == first
    assert qemu.series_id([]) != first
    patches[0].write_text("changed\n")
    assert qemu.series_id(patches) != first


def test_patch_series_must_be_numbered(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _series(tmp_path, "0001-a.patch", "0003-c.patch")


def test_cross_options() -> None:
    opts = qemu.configure_options(qemu.ARM64, Path("/sr"))
    assert "--cross-prefix=aarch64-linux-gnu-" in opts
    assert "--enable-kvm" in opts
    assert "--python=/usr/bin/python3" in opts
    assert "--target-list=aarch64-softmmu" in opts
    assert "--extra-cflags=-I/sr/usr/include" in opts
    assert "--extra-ldflags=-L/sr/usr/lib/aarch64-linux-gnu" in opts
    for feature in ("tcg", "slirp", "vhost-net", "vhost-kernel"):
        assert f"--enable-{feature}" in opts
    assert "--enable-fdt=system" in opts
    with pytest.raises(ValueError):
        qemu.configure_options(qemu.ARM64, None)


def test_native_options_have_no_cross_parts() -> None:
    opts = qemu.configure_options(qemu.X86, None)
    assert not any(o.startswith(("--cross-prefix", "--extra-", "--enable-kvm")) for o in opts)
    assert "--enable-tcg" in opts


def test_edk2_placeholders_cover_the_blobs_meson_lists() -> None:
    assert "edk2-aarch64-code.fd.bz2" in qemu.EDK2_BLOBS
    assert len(qemu.EDK2_BLOBS) == len(set(qemu.EDK2_BLOBS)) == 12


def _elf(machine: int, cls: int = 2, data: int = 1) -> bytes:
    return b"\x7fELF" + bytes([cls, data]) + bytes(12) + machine.to_bytes(2, "little") + bytes(44)


def test_elf_machine() -> None:
    assert qemu.elf_machine(_elf(0xB7)) == "aarch64"
    assert qemu.elf_machine(_elf(0x3E)) == "x86_64"
    assert qemu.elf_machine(_elf(0x28)) is None
    assert qemu.elf_machine(_elf(0xB7, cls=1)) is None
    assert qemu.elf_machine(b"#!/bin/sh\n") is None


def test_targets() -> None:
    assert (qemu.ARM64.artifact, qemu.ARM64.strip, qemu.ARM64.elf_machine) == (
        "qemu-arm64", "aarch64-linux-gnu-strip", "aarch64")
    assert (qemu.X86.artifact, qemu.X86.strip, qemu.X86.elf_machine) == ("qemu-x86", "strip", "x86_64")


def test_qom_test_runs_on_its_own_limited_to_the_virt_machine() -> None:
    runs = qemu.meson_runs(qemu.DEFAULT_QTESTS)
    assert runs[0] == (["qtest-aarch64/virtio-mmio-irq-lines-test", "qtest-aarch64/qos-test",
                        "qtest-aarch64/device-introspect-test",
                        "qtest-aarch64/boot-serial-test"], [])
    names, args = runs[1]
    assert names == ["qtest-aarch64/qom-test"] and len(runs) == 2
    assert args == ["-p", "/aarch64/qom/virt-10.0"]
    assert qemu.meson_runs(["qos-test"]) == [(["qtest-aarch64/qos-test"], [])]


def test_qtest_names() -> None:
    assert qemu.qtest_names(["qos-test", "qtest-aarch64/qom-test"]) == [
        "qtest-aarch64/qos-test", "qtest-aarch64/qom-test"]


def test_rom_links_prefer_the_first_source() -> None:
    links = qemu.rom_links(Path("/b/share"), [Path("/src/pc-bios/a.bin"), Path("/ipxe/efi-virtio.rom"),
                                               Path("/seabios/a.bin")])
    assert links == {Path("/b/share/a.bin"): Path("/src/pc-bios/a.bin"),
                     Path("/b/share/efi-virtio.rom"): Path("/ipxe/efi-virtio.rom")}


def test_meson_results_up_to_1_9(data: Path) -> None:
    results = qemu.parse_meson_test((data / "meson-qtest-skip.txt").read_text())
    assert results == {
        "qtest-aarch64/virtio-mmio-irq-lines-test": "OK",
        "qtest-aarch64/boot-serial-test": "OK",
        "qtest-aarch64/qos-test": "SKIP",
        "qtest-aarch64/device-introspect-test": "OK",
        "qtest-aarch64/qom-test": "OK",
    }


def test_meson_results_from_1_10_with_failures(data: Path) -> None:
    results = qemu.parse_meson_test((data / "meson-qtest-fail.txt").read_text())
    # The subtest line (`▶ 2/4 /aarch64/...`) and the error log are not results.
    assert results == {
        "qtest-aarch64/boot-serial-test": "OK",
        "qtest-aarch64/virtio-mmio-irq-lines-test": "FAIL",
        "qtest-aarch64/device-introspect-test": "OK",
        "qtest-aarch64/qom-test": "TIMEOUT",
    }


def test_meson_names_and_colours() -> None:
    assert qemu.meson_test_name("qtest-aarch64/qos-test") == "qtest-aarch64/qos-test"
    line = "1/1 qemu:qtest+qtest-aarch64 / qtest-aarch64/qos-test   \x1b[33mSKIP          \x1b[0m 0.01s"
    assert qemu.parse_meson_test(line) == {"qtest-aarch64/qos-test": "SKIP"}


def test_a_skipped_qtest_fails_the_series_check_even_though_meson_exits_0(data: Path) -> None:
    run = qemu.qtest_run(qemu.DEFAULT_QTESTS, (data / "meson-qtest-skip.txt").read_text(), 0)
    assert not run.ok
    assert run.problems == {"qtest-aarch64/qos-test": "SKIP"}
    assert "qtest-aarch64/qos-test: SKIP" in run.summary()


def test_failed_and_missing_qtests_are_named(data: Path) -> None:
    run = qemu.qtest_run(qemu.DEFAULT_QTESTS, (data / "meson-qtest-fail.txt").read_text(), 1,
                         Path("/s/qtest.log"))
    assert run.problems == {
        "qtest-aarch64/virtio-mmio-irq-lines-test": "FAIL",
        "qtest-aarch64/qos-test": "did not run",
        "qtest-aarch64/qom-test": "TIMEOUT",
    }
    assert run.summary().splitlines()[-2:] == ["meson test exited with status 1", "log /s/qtest.log"]


def test_meson_finding_no_test_is_no_pass() -> None:
    # meson exits 0 when none of the names exists.
    run = qemu.qtest_run(["qos-test"], "No suitable tests defined.\n", 0)
    assert not run.ok and run.problems == {"qtest-aarch64/qos-test": "did not run"}


def test_all_passed(data: Path) -> None:
    text = (data / "meson-qtest-skip.txt").read_text()
    run = qemu.qtest_run(["boot-serial-test", "qtest-aarch64/qom-test"], text, 0)
    assert run.ok and run.summary() == "2 qtests passed"
    assert not qemu.qtest_run(["boot-serial-test"], text, 1).ok
