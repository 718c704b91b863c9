"""`hil firmware export`: the series as their sender posts them, signed off by the sender."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.firmware import export, kernel

WHO = export.Identity("Ada Sender", "ada@sender-lab.org")


@pytest.mark.parametrize(("name", "address", "says"), [
    ("Ada Sender", "ada@sender-lab.org", None),
    ("", "ada@sender-lab.org", "user.name is unset"),
    ("Ada Sender", "", "user.email is unset"),
    ("Ada Sender", "ada", "not an e-mail address"),
    ("hil project", "hil@example.invalid", "reserved domain"),
    ("Ada Sender", "ada@lab.example", "reserved domain"),
    ("Ada Sender", "ada@ci.test", "reserved domain"),
    ("Ada Sender", "ada@example.com", "reserved domain"),
    ("Ada Sender", "ada@mail.example.org", "reserved domain"),
    ("Ada Sender", "123+ada@users.noreply.github.com", "no-reply"),
])
def test_only_an_identity_that_can_receive_the_review_signs_off(name, address, says):
    problem = export.identity_problem(name, address)
    assert (problem is None) if says is None else (says in str(problem))


def test_a_patch_carries_its_senders_from_sign_off_and_an_rfc_revision_tag():
    patches = kernel.patch_files(kernel.PATCHES)
    original = patches[2].read_text()
    posted = export.rewrite_patch(original, WHO, 3)
    header, _, rest = posted.partition("\n\n")
    assert "From: Ada Sender <ada@sender-lab.org>" in header.splitlines()
    assert f"\nSubject: [RFC PATCH v3 3/{len(patches)}] virtio-mmio: define a provisional" \
        in header
    message = rest.partition("\n---\n")[0]
    assert message.splitlines()[-1] == "Signed-off-by: Ada Sender <ada@sender-lab.org>"
    assert "hil project" not in posted and "example.invalid" not in posted
    # The change itself is untouched.
    assert posted.partition("\n---\n")[2] == original.partition("\n---\n")[2]


def test_the_export_writes_each_series_with_a_cover_letter(tmp_path: Path):
    written = export.export(tmp_path, WHO, 3)
    n = len(kernel.patch_files(kernel.PATCHES))
    kernel_files = sorted(p.name for p in (tmp_path / "kernel").iterdir())
    assert kernel_files[0] == "0000-cover-letter.patch" and len(kernel_files) == n + 1
    assert len(list((tmp_path / "spec").iterdir())) == 1
    assert written[0] == tmp_path / "kernel" / "0000-cover-letter.patch"
    letter = (tmp_path / "kernel" / "0000-cover-letter.patch").read_text()
    assert f"\nSubject: [RFC PATCH v3 0/{n}] virtio-mmio: several interrupt lines per device\n" \
        in letter
    assert f"Ada Sender ({n}):\n  dt-bindings: virtio: mmio: describe several interrupt lines\n" \
        in letter
    assert "drivers/virtio/virtio_mmio.c" in letter and "7 files changed" in letter
    spec = next((tmp_path / "spec").iterdir()).read_text()
    assert "\nSubject: [RFC PATCH v3] transport-mmio: several interrupt lines" in spec


def test_without_an_identity_the_export_says_what_to_set_and_writes_nothing(tmp_path: Path,
                                                                           monkeypatch):
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = hil project\n\temail = hil@example.invalid\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "hil.cli", "firmware", "export", "--out",
                        str(tmp_path / "out")], env=env, capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert "reserved domain" in r.stderr and "git config --global user.name" in r.stderr
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    with pytest.raises(ConfigError, match="reserved domain"):
        export.sender(tmp_path)
