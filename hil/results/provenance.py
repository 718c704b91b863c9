"""What a run qualified: the firmware, the patches, hil itself, the environment and the board.

Written as provenance.json into the run's directory and, flattened, as JUnit testsuite
properties, before anything is powered.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from hil.firmware.cache import MANIFEST, sha256_file

REPO = Path(__file__).resolve().parents[2]
PATCH_DIRS = {"kernel": REPO / "firmware" / "kernel" / "patches",
              "qemu": REPO / "firmware" / "qemu" / "patches"}
# Manifest entries that say what runs; the package list stays in provenance.json only.
FIRMWARE_FACTS = ("kernel", "guest_kernel", "debug_guest_kernel", "patched_vmm", "stock_vmm")


def _git(*args: str, stdin: bytes | None = None) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=REPO, input=stdin, capture_output=True,
                           check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return p.stdout.decode().strip()


def hil_identity() -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    return {"version": metadata.version("hil"), "commit": commit,
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit
            else None}


def patch_ids() -> dict[str, list[dict[str, str | None]]]:
    """`git patch-id --stable` of each patch: the same change has the same id after a rebase."""
    out: dict[str, list[dict[str, str | None]]] = {}
    for series, directory in PATCH_DIRS.items():
        out[series] = []
        for patch in sorted(directory.glob("*.patch")):
            line = _git("patch-id", "--stable", stdin=patch.read_bytes())
            out[series].append({"patch": patch.name, "patch_id": line.split()[0] if line else None})
    return out


def manifest_of(image: Path) -> Path | None:
    """The artefact manifest that describes an image file (in its directory or above)."""
    for d in list(image.resolve().parents)[:3]:
        if (d / MANIFEST).is_file():
            return d / MANIFEST
    return None


def firmware(images: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(image name -> path and sha256, artefact name -> its manifest without the file list)."""
    files: dict[str, Any] = {}
    artefacts: dict[str, Any] = {}
    for name, path in sorted(images.items()):
        p = Path(path)
        files[name] = {"path": path, "sha256": sha256_file(p) if p.is_file() else None}
        manifest = manifest_of(p) if p.exists() else None
        if manifest is not None:
            data = json.loads(manifest.read_text())
            data.pop("files", None)
            artefacts[manifest.parent.name] = data
    return files, artefacts


def collect(env_file: Path, target: str, options: dict[str, Any], images: dict[str, str],
            remote_place: str | None) -> dict[str, Any]:
    files, artefacts = firmware(images)
    return {
        "hil": hil_identity(),
        "environment": {"file": str(env_file.resolve()), "sha256": sha256_file(env_file)},
        "place": {"target": target, "remote_place": remote_place},
        "board_options": options,
        "images": files,
        "firmware": artefacts,
        "patches": patch_ids(),
    }


def properties(prov: dict[str, Any]) -> list[tuple[str, str]]:
    """The provenance as flat JUnit testsuite properties."""
    props = [
        ("hil.version", prov["hil"]["version"]),
        ("hil.commit", f"{prov['hil']['commit']}{'-dirty' if prov['hil']['dirty'] else ''}"),
        ("environment.file", prov["environment"]["file"]),
        ("environment.sha256", prov["environment"]["sha256"]),
        ("place", prov["place"]["remote_place"] or prov["place"]["target"]),
        ("board_options", json.dumps(prov["board_options"], sort_keys=True)),
    ]
    props += [(f"image.{name}.sha256", str(f["sha256"])) for name, f in prov["images"].items()]
    for artefact, manifest in prov["firmware"].items():
        props.append((f"firmware.{manifest.get('name', artefact)}.key", str(manifest.get("key"))))
        for fact in FIRMWARE_FACTS:
            if isinstance(manifest.get(fact), dict):
                for k, v in sorted(manifest[fact].items()):
                    props.append((f"firmware.{fact}.{k}", str(v)))
    for series, patches in prov["patches"].items():
        props += [(f"patch.{series}.{p['patch']}", str(p["patch_id"])) for p in patches]
    return props
