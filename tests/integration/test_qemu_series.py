"""The QEMU series meets QEMU's own checks: checkpatch, and the qtests that cover virtio-mmio
and the arm virt board, on an x86 build of the patched tree."""

import subprocess

import pytest

from hil.firmware import qemu
from hil.firmware.cache import Store

from .conftest import exported_patches


@pytest.fixture(scope="module")
def tree(built_images):
    src = qemu.work_dir(Store()) / "src"
    assert (src / "scripts" / "checkpatch.pl").is_file()
    return src


@pytest.mark.parametrize("patch", qemu.patch_files(qemu.PATCHES), ids=lambda p: p.name[:4])
def test_patch_is_clean_under_qemu_checkpatch(tree, patch):
    p = subprocess.run(["./scripts/checkpatch.pl", str(patch)], cwd=tree, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout
    assert "total: 0 errors, 0 warnings" in p.stdout


def test_qtests_for_virtio_mmio_and_the_virt_board_pass_on_the_patched_tree(built_images):
    work = qemu.work_dir(Store())
    run = qemu.run_qtests(Store())
    log = (work / "qtest.log").read_text()
    # run.ok also needs each named qtest to have run and not been skipped.
    assert run.ok, f"{run.summary()}\n{log[-4000:]}"


def test_the_series_as_its_sender_exports_it_is_clean_under_checkpatch(tree, tmp_path):
    """`hil firmware export` with a sender's identity: From: and Signed-off-by: agree, so
    checkpatch has nothing to say of the posted files either."""
    for patch in exported_patches(tmp_path, "qemu"):
        p = subprocess.run(["./scripts/checkpatch.pl", str(patch)], cwd=tree,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout
        assert "total: 0 errors, 0 warnings" in p.stdout, p.stdout
