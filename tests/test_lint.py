"""The project's own code stays ruff- and mypy-clean."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff():
    p = subprocess.run([BIN / "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout


def test_mypy():
    p = subprocess.run([BIN / "mypy", "hil"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
