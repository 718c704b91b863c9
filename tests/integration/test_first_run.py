"""The README's set-up on a brand-new machine: every first-run step against an empty cache.

A warm cache hides first-run bugs (a folder that only an earlier run created), so this runs
`firmware/bootstrap hil firmware build` with a new venv and an empty HIL_CACHE: the venv, the
apt sources, arm64 package resolution and download, the cache folders and the image assembly
all happen for real. Only the compiled guest kernel and QEMU (an hour of compiling) are taken
from the warm cache by their content keys (HIL_CACHE_SEED).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hil.firmware.cache import default_root, read_manifest

from .conftest import REPO

# Step name -> the line that says how long it took (bootstrap and hil firmware build log them).
STEPS = {
    "venv": r"bootstrap: hil installed in (\d+) s",
    "apt sources": r"apt: sources and host packages ready in ([\d.]+) s",
    "resolve": r"apt: resolved \d+ arm64 packages in ([\d.]+) s",
    "download": r"apt: \d+ \.debs \(\d+ MB\) ready in ([\d.]+) s",
    "assembly": r"images: assembled in ([\d.]+) s",
}


@pytest.mark.first_run
def test_first_run_sets_up_everything_in_an_empty_cache(
    built_images: Path, tmp_path: Path, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    warm = default_root()
    cache, venv = tmp_path / "cache", tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("HIL_IMAGES", "VIRTUAL_ENV")}
    env.update(HIL_CACHE=str(cache), HIL_CACHE_SEED=str(warm), HIL_VENV=str(venv))
    t0 = time.monotonic()
    p = subprocess.run(["firmware/bootstrap", "hil", "firmware", "build"], cwd=REPO, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
    wall = time.monotonic() - t0
    out = p.stdout
    assert p.returncode == 0, out[-5000:]

    # Step times, for the CI log: the point of seeding is that this test stays fast.
    times = {step: float(m[1]) for step, rx in STEPS.items() if (m := re.search(rx, out))}
    assert times.keys() == STEPS.keys(), out[-5000:]
    for step, seconds in times.items():
        record_property(f"first_run.{step}_s", seconds)
    record_property("first_run.wall_s", round(wall, 1))
    with capsys.disabled():
        print(f"\nfirst run: {wall:.0f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))

    # The venv has hil, installed from this checkout.
    assert (venv / "bin" / "hil").is_file() and (venv / ".hil-installed").is_file()
    q = subprocess.run([venv / "bin" / "python", "-c", "import hil; print(hil.__file__)"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert Path(q.stdout.strip()).is_relative_to(REPO), q.stderr

    # The board image was assembled into the new cache, from the same inputs as the warm one.
    (image,) = cache.glob("artifacts/board-image-*/manifest.json")
    assert (cache / "images" / "board-image").resolve() == image.parent.resolve()
    assert image.parent.name == built_images.name
    new, old = read_manifest(image.parent), read_manifest(built_images)

    # Every package was downloaded into the new cache's debs/, and is the same .deb.
    debs = {d.name.split("_", 1)[0]: d for d in (cache / "debs").glob("*.deb")}
    assert {pkg["package"] for pkg in new["packages"]} <= debs.keys()
    assert new["packages"] == old["packages"]

    # The guest kernel and QEMU came from the seed under the warm cache's keys, not a build.
    for name, field in (("guest-kernel", "guest_kernel"), ("guest-kernel-debug", "debug_guest_kernel"),
                        ("qemu-arm64", "patched_vmm")):
        assert f"{name}: taken from seed" in out and f"{name}: building" not in out
        assert new[field] == old[field]  # artefact name (key) and sha256 of the binary
        artifact = new[field]["artifact"]
        assert (read_manifest(cache / "artifacts" / artifact)["key"]
                == read_manifest(warm / "artifacts" / artifact)["key"])

    # A new venv and a cache of .debs are some hundred MB: keep them only when the test fails.
    shutil.rmtree(cache)
    shutil.rmtree(venv)
