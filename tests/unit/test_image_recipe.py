"""The image recipe (firmware/images.yaml): the forms each initramfs is written in."""

from pathlib import Path

import pytest
import yaml

from hil.errors import ConfigError
from hil.firmware import images


def test_the_board_initramfs_is_written_gzipd_for_tftp_and_plain_for_local_disk():
    recipe = images.Recipe.load()
    assert recipe.images["board"].compression == ("gzip", "none")
    assert recipe.images["guest"].compression == ("none",)


@pytest.mark.parametrize("compression", ["zstd", ["gzip", "xz"], []])
def test_a_compression_the_build_does_not_know_is_named(tmp_path: Path, compression) -> None:
    data = yaml.safe_load(images.RECIPE.read_text())
    data["images"]["board"]["compression"] = compression
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="image board: compression must be none, gzip or a "
                                          "list of both"):
        images.Recipe.load(path)
