"""The files an environment file's `images:` names, as the lab's drivers and strategies need them."""

from __future__ import annotations

import os
from typing import Any

from hil.errors import ArtifactMissing

BUILD_HINT = "run `hil firmware build` (or set HIL_IMAGES to a built image directory)"


def image_path(target: Any, key: str) -> str:
    """The file of the environment's image `key`, which must exist."""
    try:
        path: str = target.env.config.get_image_path(key)
    except KeyError as e:
        raise ArtifactMissing(f"environment has no image '{key}' under images:") from e
    if not os.path.exists(path):
        raise ArtifactMissing(f"board image '{key}' not found at {path}: {BUILD_HINT}")
    return path
