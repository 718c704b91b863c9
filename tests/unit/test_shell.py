"""Shell: files read over a console, with this machine's sh standing in for the board's."""

import subprocess
from pathlib import Path

import pytest

from hil.errors import CommandFailed
from hil.labgrid.shell import Shell


class LocalSh:
    """A labgrid CommandProtocol that runs each command in this machine's sh."""

    def run(self, command: str, timeout: float = 60.0) -> tuple[list[str], list[str], int]:
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)
        return p.stdout.splitlines(), [], p.returncode


def test_a_long_text_comes_back_whole_in_a_third_of_the_characters(data: Path) -> None:
    path = data / "iperf3-client.json"
    shell = Shell("guest", LocalSh())
    assert shell.read_compressed(str(path)) == path.read_text()
    sent = shell.check(f"test -r {path} && gzip -c {path} | base64")
    assert len(sent) < len(path.read_text()) * 0.4


def test_a_file_that_is_not_there_fails_the_read(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed):
        Shell("guest", LocalSh()).read_compressed(str(tmp_path / "none.json"))
