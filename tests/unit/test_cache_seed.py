"""A store takes compiled artefacts from a warm seed store by content key, and only those."""

import json
import shutil
from pathlib import Path

import pytest

from hil.firmware import kernel, qemu
from hil.firmware.cache import SEEDABLE, Store, default_images, digest, read_manifest

KEY = digest(["inputs"])


def _image(d: Path) -> dict[str, str]:
    (d / "Image").write_bytes(b"ARM\x64" * 1000)
    (d / "bin").mkdir()
    (d / "bin" / "tool").write_bytes(b"\x7fELF")
    return {"kernel": "x"}


def _must_not_build(d: Path) -> dict[str, str]:
    raise AssertionError("built although the seed has it")


@pytest.fixture
def warm(tmp_path: Path) -> Store:
    store = Store(tmp_path / "warm")
    store.ensure("guest-kernel", KEY, _image, log=lambda _m: None)
    return store


def test_a_miss_is_taken_from_the_seed_under_the_same_key(tmp_path, warm):
    cold = Store(tmp_path / "cold", seed=warm)
    logs: list[str] = []
    out = cold.ensure("guest-kernel", KEY, _must_not_build, log=logs.append)
    assert out == cold.artifact_dir("guest-kernel", KEY) and out.parent.parent == cold.root
    assert read_manifest(out) == read_manifest(warm.lookup("guest-kernel", KEY))
    assert (out / "bin" / "tool").read_bytes() == b"\x7fELF"
    assert any("taken from seed" in m for m in logs)
    assert (cold.root / "images" / "guest-kernel").resolve() == out.resolve()
    # Same filesystem: hard links, no second copy of the data.
    assert (out / "Image").stat().st_ino == (warm.lookup("guest-kernel", KEY) / "Image").stat().st_ino
    # Now it is the cold store's own: a plain hit, the seed is not asked again.
    logs.clear()
    assert cold.ensure("guest-kernel", KEY, _must_not_build, log=logs.append) == out
    assert logs == [f"guest-kernel: cache hit {out}"]


def test_the_copy_survives_the_seed_pruning_it(tmp_path, warm):
    cold = Store(tmp_path / "cold", seed=warm)
    out = cold.ensure("guest-kernel", KEY, _must_not_build, log=lambda _m: None)
    shutil.rmtree(warm.root / "artifacts")
    assert cold.lookup("guest-kernel", KEY) == out
    assert (out / "Image").read_bytes() == b"ARM\x64" * 1000


def test_the_board_image_never_comes_from_a_seed(tmp_path):
    name = "board-image"
    warm = Store(tmp_path / "warm")
    warm.ensure(name, KEY, _image, log=lambda _m: None)
    cold = Store(tmp_path / "cold", seed=warm)
    built: list[Path] = []

    def build(d: Path) -> dict[str, str]:
        built.append(d)
        return _image(d)

    logs: list[str] = []
    cold.ensure(name, KEY, build, log=logs.append)
    assert built and not any("seed" in m for m in logs)


def test_another_key_is_built(tmp_path, warm):
    cold = Store(tmp_path / "cold", seed=warm)
    other = digest(["other inputs"])
    logs: list[str] = []
    out = cold.ensure("guest-kernel", other, _image, log=logs.append)
    assert out == cold.artifact_dir("guest-kernel", other)
    assert logs == [f"guest-kernel: building {out.name}"]


@pytest.mark.parametrize("damage", ["truncate", "remove", "other key"])
def test_a_damaged_seed_copy_is_built_instead(tmp_path, warm, damage):
    src = warm.lookup("guest-kernel", KEY)
    if damage == "truncate":
        (src / "Image").write_bytes(b"ARM")
    elif damage == "remove":
        (src / "bin" / "tool").unlink()
    else:
        manifest = read_manifest(src)
        (src / "manifest.json").write_text(json.dumps({**manifest, "key": "f" * 64}))
    cold = Store(tmp_path / "cold", seed=warm)
    logs: list[str] = []
    out = cold.ensure("guest-kernel", KEY, _image, log=logs.append)
    assert any("incomplete" in m for m in logs) and any("building" in m for m in logs)
    assert read_manifest(out)["key"] == KEY
    assert not list((cold.root / "artifacts").glob("*.tmp"))


def test_the_environment_seeds_the_default_store_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HIL_CACHE", str(tmp_path / "cold"))
    monkeypatch.setenv("HIL_CACHE_SEED", str(tmp_path / "warm"))
    store = Store()
    assert store.root == tmp_path / "cold"
    assert store.seed is not None and store.seed.root == tmp_path / "warm"
    assert store.seed.seed is None
    assert Store(tmp_path / "other").seed is None
    # A seed that is the store itself is no seed.
    monkeypatch.setenv("HIL_CACHE_SEED", str(tmp_path / "cold"))
    assert Store().seed is None
    monkeypatch.delenv("HIL_CACHE_SEED")
    assert Store().seed is None


def test_seedable_names_are_the_compiled_artefacts():
    assert {kernel.ARTIFACT, kernel.DEBUG_ARTIFACT, qemu.ARM64.artifact, qemu.X86.artifact} == SEEDABLE


def test_images_follow_the_cache_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv("HIL_IMAGES", raising=False)
    monkeypatch.setenv("HIL_CACHE", str(tmp_path))
    assert default_images() == tmp_path / "images"
    monkeypatch.setenv("HIL_IMAGES", str(tmp_path / "elsewhere"))
    assert default_images() == tmp_path / "elsewhere"
