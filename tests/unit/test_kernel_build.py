"""The guest kernel build's pure decisions: cache key, patch series, config fragments."""

from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.firmware import kernel

SOURCE = kernel.Source("linux-source-6.12", "6.12.117-1~deb12u1", 151931384)


def _series(tmp_path: Path, *names: str) -> list[Path]:
    d = tmp_path / "patches"
    d.mkdir(exist_ok=True)
    for n in names:
        if not (d / n).exists():
            (d / n).write_text(f"Subject: {n}\n")
    return kernel.patch_files(d)


def _inputs(tmp_path: Path, **over: object) -> kernel.KeyInputs:
    frag = tmp_path / "frag.config"
    if not frag.exists():
        frag.write_text("CONFIG_SMP=y\n")
    mod = tmp_path / "kernel.py"
    if not mod.exists():
        mod.write_text("# module\n")
    base: dict[str, object] = {
        "source": SOURCE,
        "toolchain": "aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0",
        "patches": _series(tmp_path, "0001-a.patch", "0002-b.patch"),
        "fragment": frag,
        "module": mod,
    }
    base.update(over)
    return kernel.KeyInputs(**base)  # type: ignore[arg-type]


def test_key_is_stable(tmp_path: Path) -> None:
    assert kernel.cache_key(_inputs(tmp_path)) == kernel.cache_key(_inputs(tmp_path))


@pytest.mark.parametrize("change", [
    {"source": kernel.Source("linux-source-6.12", "6.12.118-1~deb12u1", 151931384)},
    {"source": kernel.Source("linux-source-6.12", "6.12.117-1~deb12u1", 1)},
    {"toolchain": "aarch64-linux-gnu-gcc 13"},
    {"patches": []},
])
def test_key_follows_inputs(tmp_path: Path, change: dict[str, object]) -> None:
    before = kernel.cache_key(_inputs(tmp_path))
    assert before != kernel.cache_key(_inputs(tmp_path, **change))


def test_key_follows_file_contents(tmp_path: Path) -> None:
    before = kernel.cache_key(_inputs(tmp_path))
    (tmp_path / "patches" / "0002-b.patch").write_text("changed\n")
    after_patch = kernel.cache_key(_inputs(tmp_path))
    (tmp_path / "frag.config").write_text("CONFIG_SMP=y\nCONFIG_NET=y\n")
    after_fragment = kernel.cache_key(_inputs(tmp_path))
    (tmp_path / "kernel.py").write_text("# changed\n")
    after_module = kernel.cache_key(_inputs(tmp_path))
    assert len({before, after_patch, after_fragment, after_module}) == 4


def test_key_does_not_read_the_tarball(tmp_path: Path) -> None:
    parts = kernel.key_parts(_inputs(tmp_path))
    assert "linux-source-6.12 6.12.117-1~deb12u1 151931384" in parts
    assert not any(isinstance(p, Path) and p.suffix == ".xz" for p in parts)


def test_patch_series_order_and_names(tmp_path: Path) -> None:
    got = _series(tmp_path, "0002-b.patch", "0001-a.patch", "notes.txt")
    assert [p.name for p in got] == ["0001-a.patch", "0002-b.patch"]
    assert kernel.patch_files(tmp_path / "absent") == []


@pytest.mark.parametrize("names", [
    ("0001-a.patch", "0003-c.patch"),  # gap
    ("0002-b.patch",),  # does not start at 1
    ("1-a.patch",),  # not four digits
])
def test_patch_series_rejects_bad_numbering(tmp_path: Path, names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        _series(tmp_path, *names)


def test_parse_fragment() -> None:
    text = """
# comment
CONFIG_SMP=y
CONFIG_NR_CPUS=8
CONFIG_CMDLINE="console=ttyAMA0"
# CONFIG_MODULES is not set
"""
    assert kernel.parse_fragment(text) == {
        "CONFIG_SMP": "y",
        "CONFIG_NR_CPUS": "8",
        "CONFIG_CMDLINE": '"console=ttyAMA0"',
        "CONFIG_MODULES": None,
    }


@pytest.mark.parametrize("line", ["CONFIG_SMP=n", "CONFIG_SMP=", "SMP=y", "CONFIG_SMP y"])
def test_parse_fragment_rejects(line: str) -> None:
    with pytest.raises(ConfigError):
        kernel.parse_fragment(line + "\n")


def test_config_mismatches() -> None:
    config = kernel.parse_config(
        "CONFIG_SMP=y\nCONFIG_NR_CPUS=8\n# CONFIG_MODULES is not set\nCONFIG_VIRTIO_MMIO=m\n"
    )
    assert config == {"CONFIG_SMP": "y", "CONFIG_NR_CPUS": "8", "CONFIG_VIRTIO_MMIO": "m"}
    wanted = {
        "CONFIG_SMP": "y",  # as asked
        "CONFIG_MODULES": None,  # as asked
        "CONFIG_NR_CPUS": "4",  # different value
        "CONFIG_VIRTIO_MMIO": "y",  # m instead of y
        "CONFIG_PCI_HOST_GENERIC": "y",  # dropped by a missing dependency
        "CONFIG_VIRTIO_NET": None,
    }
    wanted_but_set = {**wanted, "CONFIG_SMP": None}
    assert kernel.config_mismatches(wanted, config) == [
        "CONFIG_NR_CPUS: wanted 4, got 8",
        "CONFIG_VIRTIO_MMIO: wanted y, got m",
        "CONFIG_PCI_HOST_GENERIC: wanted y, got not set",
    ]
    assert "CONFIG_SMP: wanted not set, got y" in kernel.config_mismatches(wanted_but_set, config)


def test_tree_is_current() -> None:
    assert kernel.tree_is_current(SOURCE.identity + "\n", SOURCE)
    assert not kernel.tree_is_current(None, SOURCE)
    assert not kernel.tree_is_current("linux-source-6.12 6.12.116-1~deb12u1 1\n", SOURCE)


def test_patch_list(tmp_path: Path) -> None:
    patches = _series(tmp_path, "0001-a.patch")
    text = kernel.patch_list(patches)
    sha, name = text.split()
    assert name == "0001-a.patch" and len(sha) == 64 and text.endswith("\n")


def test_repository_series_and_fragments_are_well_formed() -> None:
    patches = kernel.patch_files(kernel.PATCHES)
    assert patches, "firmware/kernel/patches is empty"
    for p in patches:
        head = p.read_text()
        assert "\nSubject: [PATCH" in head and "Signed-off-by: " in head, p.name
    for frag in (kernel.FRAGMENT, kernel.KERNEL / "distro.config"):
        wanted = kernel.parse_fragment(frag.read_text())
        assert wanted.get("CONFIG_VIRTIO_MMIO") in ("y", "m"), frag.name
    guest = kernel.parse_fragment(kernel.FRAGMENT.read_text())
    for option in ("CONFIG_SMP", "CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_NET", "CONFIG_FUTEX",
                   "CONFIG_BLK_DEV_INITRD", "CONFIG_SERIAL_AMBA_PL011_CONSOLE"):
        assert guest[option] == "y", option
