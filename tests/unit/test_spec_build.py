from pathlib import Path

import pytest

from hil.errors import InfrastructureError
from hil.firmware import spec

LOG = """\
This is XeTeX, Version 3.141592653-2.6-0.999994 (TeX Live 2022/Debian) (preloaded format=xelatex 2023.1.22)
LaTeX Warning: Reference `sec:Basic Facilities / Notifications' on page 12 undefined on input line 345.
LaTeX Warning: Reference `sec:Basic Facilities / Notifications' on page 13 undefined on input line 400.
LaTeX Warning: Citation `Virtio PCI Draft' on page 2 undefined on input line 20.
LaTeX Warning: There were undefined references.
Output written on virtio-v1.4-cs01.pdf (442 pages).
"""


def test_a_log_says_pages_and_each_undefined_label_once():
    result = spec.parse_log(LOG)
    assert result.pages == 442
    assert result.undefined == ["sec:Basic Facilities / Notifications", "Virtio PCI Draft"]
    assert result.errors == []


def test_a_log_of_a_failed_pass_has_no_pages_and_its_errors():
    result = spec.parse_log("! Undefined control sequence.\nl.12 \\foo\n! Emergency stop.\n")
    assert result.pages is None
    assert result.errors == ["Undefined control sequence.", "Emergency stop."]


def test_a_clean_log_has_nothing_to_say():
    assert spec.parse_log("Output written on x.pdf (1 page).\n") == spec.LatexLog(1, [], [])


def test_a_source_without_the_base_commit_says_to_give_another(tmp_path: Path):
    with pytest.raises(InfrastructureError, match="--source"):
        spec.fetch(str(tmp_path / "nowhere"), tmp_path / "tree")


def test_the_series_is_there_to_build():
    assert [p.name[:5] for p in spec.patch_files(spec.SPEC)] == ["0001-"]
