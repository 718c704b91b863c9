from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data() -> Path:
    return DATA


def pytest_configure(config: pytest.Config) -> None:
    # What the CI budget goes to: the slowest tests, unless --durations says otherwise.
    if not config.option.durations:
        config.option.durations = 25
        config.option.durations_min = 5.0
