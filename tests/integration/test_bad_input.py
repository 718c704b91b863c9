"""Bad input gets one clear message that says what to fix, a non-zero exit, and the console log."""

import xml.etree.ElementTree as ET

import pytest

from .conftest import driver, run_pytest, virtual_env

BOARD_CASE = "testcases/test_board.py"


def _kinds(results):
    root = ET.parse(results / "junit.xml").getroot()
    return [p.get("value") for p in root.iter("property") if p.get("name") == "hil_failure_kind"]


def test_missing_env_file_names_the_option(tmp_path):
    p = run_pytest(tmp_path / "nope.yaml", tmp_path, BOARD_CASE)
    assert p.returncode == 4  # usage error
    assert "nope.yaml does not exist: pass --lg-env" in p.stderr
    assert "Traceback" not in p.stderr


def test_malformed_env_file_is_reported_as_yaml_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  main: [drivers\n")
    p = run_pytest(bad, tmp_path, BOARD_CASE)
    assert p.returncode == 4 and "is not valid YAML" in p.stderr and "line 2" in p.stderr


def test_env_without_targets_says_what_to_add(tmp_path):
    bad = tmp_path / "empty.yaml"
    bad.write_text("tools: {}\n")
    p = run_pytest(bad, tmp_path, BOARD_CASE)
    assert p.returncode == 4 and "'targets:' is missing or empty" in p.stderr


def test_missing_board_image_says_to_build_and_fails_fast(built_images, tmp_path):
    results = tmp_path / "r"
    p = run_pytest(virtual_env(tmp_path), results, BOARD_CASE,
                   extra_env={"HIL_IMAGES": str(tmp_path / "empty")})
    assert p.returncode == 2  # inconclusive: the lab, not the product
    assert "board image 'board-kernel' not found" in p.stdout
    assert "run `hil firmware build`" in p.stdout
    # One boot attempt: labgrid's never_retry broke the strategy, the other cases are skipped.
    root = ET.parse(results / "junit.xml").getroot()
    assert len(list(root.iter("error"))) == 1
    skipped = [s.get("message") for s in root.iter("skipped")]
    assert len(skipped) == 2 and all("broken state" in m for m in skipped), skipped
    assert "not run: 2 case(s) after the lab broke (infrastructure)" in p.stdout
    assert set(_kinds(results)) == {"infrastructure"}


def test_missing_qemu_binary_is_named(built_images, tmp_path):
    def edit(d):
        d["tools"]["qemu"] = "/nonexistent/qemu-system-aarch64"
    p = run_pytest(virtual_env(tmp_path, edit), tmp_path / "r", BOARD_CASE)
    assert p.returncode == 2
    assert "QEMU binary for tool 'qemu' not found (/nonexistent/qemu-system-aarch64)" in p.stdout


@pytest.mark.parametrize(
    ("rdinit", "message", "kind"),
    [
        # A shell without our init: no "ready" line, no prompt -> the board hangs for the lab.
        ("/bin/sh", "board did not reach its prompt within 15 s", "infrastructure"),
        # busybox as init prints its usage and exits: the kernel panics. A board that does not
        # reach its shell is the lab's problem, whatever it printed.
        ("/bin/busybox", "board panicked while booting: Kernel panic - not syncing",
         "infrastructure"),
    ],
)
def test_board_that_hangs_or_panics_keeps_its_console_log(built_images, tmp_path, rdinit, message, kind):
    def edit(d):
        board = driver(d, "VirtualBoardDriver")
        board["boot_args"] = f"console=ttyAMA0 rdinit={rdinit}"
        driver(d, "BoardGuestStrategy")["board_timeout"] = 15
    results = tmp_path / "r"
    p = run_pytest(virtual_env(tmp_path, edit), results, BOARD_CASE)
    assert p.returncode == 2
    assert message in p.stdout, p.stdout[-3000:]
    log = results / "console" / "console_main_board-console"
    assert f"console log: {log}" in p.stdout
    assert log.stat().st_size > 0
    assert kind in _kinds(results)


def test_guest_that_never_reaches_its_prompt_is_named(built_images, tmp_path):
    def edit(d):
        driver(d, "GuestVMMDriver")["append"] = "console=ttyAMA0 rdinit=/bin/sh"
        driver(d, "BoardGuestStrategy")["guest_timeout"] = 8
    results = tmp_path / "r"
    p = run_pytest(virtual_env(tmp_path, edit), results, "testcases/test_guest.py")
    # The board still answers: a guest that never comes up is the product's failure.
    assert p.returncode == 1
    assert "guest did not reach its prompt within 8 s" in p.stdout, p.stdout[-3000:]
    assert set(_kinds(results)) == {"product"}
    assert (results / "console" / "console_main_guest-serial").stat().st_size > 0
