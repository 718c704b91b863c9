"""The virtio specification patch (firmware/spec/), applied to the OASIS virtio-spec sources
and built with the spec's own `makepdf.sh` (three xelatex passes) and Debian's TeX Live.

The spec's sources are in no Debian package: they are fetched from its git repository at the
commit the patch was written on (BASE), by full hash, so a moved branch cannot change what is
built. Where github.com cannot be reached, `source` names another git repository that has the
commit (a clone or a mirror). The PDF and the last pass's log are cached under a key of BASE
and the patches.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import InfrastructureError, ProductFailure

from . import apt
from .cache import Store, digest
from .kernel import GIT_ENV, patch_files, patch_list

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "firmware" / "spec"
UPSTREAM = "https://github.com/oasis-tcs/virtio-spec"
BASE = "15f488c162107f7b52fb2e4d0f36a2349fe9d3a9"  # "editorial: Update revision date"
ARTIFACT = "virtio-spec"
# What firmware/spec/README.md names: xelatex and the packages and fonts virtio.tex loads.
PACKAGES: dict[str, str | None] = {name: None for name in (
    "git", "texlive-xetex", "texlive-latex-extra", "texlive-fonts-recommended",
    "fonts-liberation", "lmodern")}
Log = Callable[[str], None]

_OUTPUT = re.compile(r"^Output written on (?P<file>\S+) \((?P<pages>\d+) pages?")
_UNDEFINED = re.compile(r"LaTeX Warning: (?:Reference|Citation) `(?P<label>[^']+)' on page \d+ "
                        r"undefined")


@dataclass(frozen=True)
class LatexLog:
    """What a xelatex log says about the document it wrote."""

    pages: int | None       # None: no PDF was written
    undefined: list[str]    # labels referenced but never defined, in order, once each
    errors: list[str]       # TeX's `! ...` error lines


def parse_log(text: str) -> LatexLog:
    pages = None
    undefined: list[str] = []
    errors = []
    for line in text.splitlines():
        if m := _OUTPUT.match(line):
            pages = int(m["pages"])
        elif m := _UNDEFINED.search(line):
            if m["label"] not in undefined:
                undefined.append(m["label"])
        elif line.startswith("! "):
            errors.append(line[2:])
    return LatexLog(pages, undefined, errors)


def _git(tree: Path, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, text=True,
                   env={**os.environ, **(env or {})})


def fetch(source: str, tree: Path) -> None:
    """A work tree of BASE from `source` (a URL or a local git repository)."""
    tree.mkdir(parents=True)
    _git(tree, "init", "-q")
    try:
        _git(tree, "fetch", "-q", "--depth", "1", source, BASE)
    except subprocess.CalledProcessError as e:
        why = (e.stderr or "").strip().splitlines()[-1:] or ["no message"]
        raise InfrastructureError(
            f"could not fetch virtio-spec {BASE[:12]} from {source}: {why[0]}. Where it cannot "
            f"be reached, give --source a git repository that has that commit (a clone of "
            f"{UPSTREAM} or a mirror)") from None
    _git(tree, "checkout", "-q", "FETCH_HEAD")


def _make_pdf(tree: Path, patches: list[Path], out: Path, log: Log) -> dict[str, Any]:
    try:
        _git(tree, "am", "-q", *map(str, patches), env=GIT_ENV)
    except subprocess.CalledProcessError as e:
        raise ProductFailure(f"firmware/spec: the patch does not apply to virtio-spec "
                             f"{BASE[:12]}:\n{e.stderr.strip()}") from None
    jobname = (tree / "REVISION").read_text().strip()
    log(f"{ARTIFACT}: makepdf.sh ({jobname}, three xelatex passes)")
    # stdin closed: xelatex stops at the first error instead of waiting for an answer; long
    # log lines unwrapped, so that one warning is one line.
    run = subprocess.run(["sh", "./makepdf.sh"], cwd=tree, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True,
                         env={**os.environ, "max_print_line": "100000"})
    latex_log = tree / f"{jobname}.log"
    text = latex_log.read_text(errors="replace") if latex_log.is_file() else ""
    (out / "makepdf.log").write_text(run.stdout + run.stderr)
    result = parse_log(text)
    if result.errors or result.pages is None or result.undefined:
        problems = result.errors[:5] or [f"undefined: {', '.join(result.undefined[:10])}"
                                         if result.undefined else "no PDF written"]
        raise ProductFailure(f"firmware/spec: makepdf.sh on the patched spec failed (log: "
                             f"{out / 'makepdf.log'}): " + "; ".join(problems))
    shutil.copyfile(tree / f"{jobname}.pdf", out / f"{jobname}.pdf")
    shutil.copyfile(latex_log, out / f"{jobname}.log")
    return {"base": BASE, "pdf": f"{jobname}.pdf", "pages": result.pages}


def build(source: str = UPSTREAM, store: Store | None = None, log: Log = print) -> Path:
    """The patched spec's PDF, from the cache or built now (needs root for apt)."""
    patches = patch_files(SPEC)
    if not patches:
        raise InfrastructureError(f"{SPEC}: no *.patch")
    store = store or Store()
    key = digest([BASE, patch_list(patches)])
    found = store.lookup(ARTIFACT, key)
    if found:
        log(f"{ARTIFACT}: cache hit {found}")
        return found

    def make(out: Path) -> dict[str, Any]:
        apt.ensure_sources(log)
        apt.ensure_host_packages(PACKAGES, log)
        with tempfile.TemporaryDirectory(prefix="hil-spec-") as tmp:
            tree = Path(tmp) / "virtio-spec"
            fetch(source, tree)
            return {**_make_pdf(tree, patches, out, log), "source": source,
                    "patches": patch_list(patches)}

    return store.build(ARTIFACT, key, make, log)
