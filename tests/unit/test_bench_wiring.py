import subprocess
from pathlib import Path

from hil import bench

DATA = Path(__file__).resolve().parents[1] / "data"


def test_the_wiring_benchmark_prints_each_session_and_how_the_sessions_agree(
        tmp_path, monkeypatch, capsys):
    recorded = iter(["bench-wiring-icount-session-1.jsonl", "bench-wiring-icount-session-2.jsonl"])
    calls = []

    def session(cmd, **_kw):
        # Stands in for pytest on the lab: the session's results as a recorded session left them.
        calls.append(cmd)
        directory = Path(cmd[cmd.index("--hil-results") + 1])
        directory.mkdir(parents=True)
        (directory / "measurements.jsonl").write_text((DATA / next(recorded)).read_text())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", session)
    assert bench.wiring(Path("places/virtual-costmodel.yaml"), 2, tmp_path) == 0
    out = capsys.readouterr().out
    assert all("--hil-bench" in c and c[-1].endswith("testcases/test_wiring_cost.py") for c in calls)
    assert out.count("clock icount") == 2
    assert "vhost-net-irqfd         5.435 (1.0%, n=2)  14542 (1.7%, n=2)" in out
    assert "transactions vhost-net-irqfd / vhost-net" in out
    assert "ordering by transactions/s: DIFFERS between sessions" in out


def test_a_failed_session_passes_on_its_exit_code(tmp_path, monkeypatch, capsys):
    def failed(cmd, **_kw):
        return subprocess.CompletedProcess(cmd, 2, "no board reached", "")

    monkeypatch.setattr(subprocess, "run", failed)
    assert bench.wiring(Path("places/virtual-costmodel.yaml"), 1, tmp_path) == 2
    assert "no board reached" in capsys.readouterr().out


def test_a_real_board_is_chosen_with_pytest_arguments_passed_through(tmp_path, monkeypatch):
    calls = []

    def session(cmd, **_kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", session)
    bench.wiring(Path("places/boards.yaml"), 1, tmp_path, ["--hil-reserve", "name=rpi4"])
    (cmd,) = calls
    assert cmd[cmd.index("--hil-reserve") + 1] == "name=rpi4"
    assert cmd[-1].endswith("testcases/test_wiring_cost.py")
