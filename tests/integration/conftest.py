"""Integration tests boot the virtual lab for real: QEMU, Debian's kernel, nested KVM."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.firmware import images

REPO = Path(__file__).resolve().parents[2]
VIRTUAL = REPO / "places" / "virtual.yaml"


@pytest.fixture(scope="session")
def built_images() -> Path:
    """The firmware build, as `hil firmware build` does it (a cache hit when warm)."""
    out = images.build()
    os.environ["HIL_IMAGES"] = str(out.parent.parent / "images")
    return out


def virtual_env(tmp_path: Path, edit: Any = None) -> Path:
    """A copy of places/virtual.yaml, optionally changed by `edit(data)`."""
    data = yaml.safe_load(VIRTUAL.read_text())
    if edit:
        edit(data)
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def driver(data: dict[str, Any], cls: str, name: str | None = None) -> dict[str, Any]:
    for entry in data["targets"]["main"]["drivers"]:
        ((kind, attrs),) = entry.items()
        if kind == cls and (name is None or attrs.get("name") == name):
            return attrs  # type: ignore[no-any-return]
    raise KeyError(cls)


def run_pytest(env: Path, results: Path, *args: str, extra_env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lg-env", str(env),
           "--hil-results", str(results), "--junitxml", str(results / "junit.xml"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(extra_env or {})})


@pytest.fixture
def lab_env(built_images: Path) -> Iterator[Any]:
    """A labgrid Environment on places/virtual.yaml, powered off afterwards."""
    from labgrid import Environment

    import hil.labgrid  # noqa: F401

    env = Environment(str(VIRTUAL))
    strategy = env.get_target("main").get_driver("BoardGuestStrategy")
    yield strategy
    strategy.transition("off")


# Planted as the virtual lab's switch password: it must show up nowhere but in its own file.
LAB_SECRET = "planted-" + __import__("secrets").token_hex(8)


@pytest.fixture(scope="session")
def virtual_lab(built_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`hil lab up` with two boards, once for the test_virtual_lab* modules (which run last,
    in this order: test_virtual_lab_teardown checks `hil lab down`). Returns when every place
    passed its first health check. The boards' consoles go through the lab-host VM's FTDI
    adapters (`--lab-host vm`), as a real lab's do; HIL_LAB_HOST=local exports them from this
    host instead."""
    from types import SimpleNamespace

    from hil.virtual_lab import supervisor as vl

    base = tmp_path_factory.mktemp("vlab")
    creds = base / "power-credentials"
    creds.write_text(f"hil:{LAB_SECRET}\n")
    creds.chmod(0o600)
    directory = base / "lab"
    import time

    t0 = time.monotonic()
    lab_host = os.environ.get("HIL_LAB_HOST", "vm")
    state = vl.up(directory, 2, credentials=str(creds), wait_healthy=400, lab_host=lab_host)
    from hil.scheduling.coordinator import Coordinator

    with Coordinator(state.coordinator, purpose="test") as c:
        unhealthy = [f"{p.name}: {p.tags.get('health')}: {p.comment}"
                     for p in c.places() if p.tags.get("health") != "good"]
    if unhealthy:
        vl.down(directory)
        pytest.fail("the virtual lab's places failed their first health check: "
                    + "; ".join(unhealthy))
    lab = SimpleNamespace(state=state, directory=directory, creds=creds, lab_host=lab_host,
                          up_s=state.timings["up_s"], healthy_s=time.monotonic() - t0,
                          # No power credentials: the lab's relay holds them.
                          env={"LG_COORDINATOR": state.coordinator})
    yield lab
    vl.down(directory)


def exported_patches(out: Path, series: str) -> list[Path]:
    """`hil firmware export` with a sender's identity into `out`: that series' patches (the
    cover letter is no patch to check)."""
    from hil.firmware import export

    export.export(out, export.Identity("Ada Sender", "ada@sender-lab.org"), 3)
    patches = [p for p in sorted((out / series).glob("*.patch")) if p.name[:4] != "0000"]
    assert patches
    return patches
