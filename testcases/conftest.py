"""Options of the qualification suite's long campaigns (run with --hil-campaigns, which
`hil qualify --release` passes)."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil campaigns")
    group.addoption("--unbind-cycles", type=int, default=50, metavar="N",
                    help="unbind/bind cycles of the virtio-mmio transport (default 50)")
    group.addoption("--pm-test-cycles", type=int, default=20, metavar="N",
                    help="pm_test suspend/resume cycles (default 20)")
