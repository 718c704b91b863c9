"""The hil pytest plugin, in labgrid's shape: hooks (options, markers, failure kinds, verdict)
and fixtures (board, guest, measurements). Registered as a `pytest11` entry point; it rides on
labgrid's plugin (`--lg-env`, `target`, `strategy`).

It acts only in a qualification run, that is when an environment is given (`--lg-env` or
LG_ENV); other pytest runs on this machine are left alone.
"""

from hil.plugin.fixtures import (
    board,
    board_options,
    boot_guest,
    guest,
    lab,
    measurements,
    provenance,
    vmm,
)
from hil.plugin.hooks import (
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_call,
    pytest_runtest_makereport,
)

__all__ = [
    "board", "board_options", "boot_guest", "guest", "lab", "measurements", "provenance",
    "pytest_addoption", "pytest_collection_modifyitems", "pytest_configure",
    "pytest_runtest_call", "pytest_runtest_makereport", "vmm",
]
