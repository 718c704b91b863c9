"""The guest kernel series meets the kernel's own checks, in the tree the firmware build used."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.firmware import kernel
from hil.firmware.cache import Store

from .conftest import exported_patches

BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def tree(built_images):
    src = kernel.work_dir(Store()) / "src"
    assert (src / "scripts" / "checkpatch.pl").is_file()
    return src


@pytest.mark.parametrize("patch", kernel.patch_files(kernel.PATCHES), ids=lambda p: p.name[:4])
def test_patch_is_clean_under_checkpatch_strict(tree, patch):
    p = subprocess.run(["./scripts/checkpatch.pl", "--strict", str(patch)], cwd=tree,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    assert "total: 0 errors, 0 warnings, 0 checks" in p.stdout


def test_virtio_mmio_builds_without_w1_warnings(tree):
    out = kernel.work_dir(Store()) / "out"
    (out / "drivers" / "virtio" / "virtio_mmio.o").unlink(missing_ok=True)
    p = subprocess.run(["make", f"O={out}", "ARCH=arm64", f"CROSS_COMPILE={kernel.CROSS}", "W=1",
                        "drivers/virtio/virtio_mmio.o"], cwd=tree, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "warning:" not in p.stderr, p.stderr


def test_dt_binding_check_passes_for_the_virtio_mmio_binding(tree):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    # Kept beside the tree: make rebuilds dtc and the schema of every binding (most of the
    # check's minute) only when they change; the binding's own checks always run again.
    out = kernel.work_dir(Store()) / "dt-binding-check"
    bindings = out / "Documentation" / "devicetree" / "bindings"
    for done in ("virtio/mmio.example.dts", "virtio/mmio.example.dtb", ".dt-binding.checked",
                 ".yamllint.checked"):
        (bindings / done).unlink(missing_ok=True)
    p = subprocess.run(["make", f"O={out}", "dt_binding_check",
                        "DT_SCHEMA_FILES=virtio/mmio.yaml"], cwd=tree, capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "mmio.example.dtb" in p.stdout
    assert "virtio/mmio" not in p.stderr, p.stderr


def test_the_series_as_its_sender_exports_it_is_clean_under_checkpatch(tree, tmp_path):
    """`hil firmware export` with a sender's identity: From: and Signed-off-by: agree, so
    checkpatch has nothing to say of the posted files either."""
    for patch in exported_patches(tmp_path, "kernel"):
        p = subprocess.run(["./scripts/checkpatch.pl", "--strict", str(patch)], cwd=tree,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout
        assert "total: 0 errors, 0 warnings, 0 checks" in p.stdout, p.stdout
