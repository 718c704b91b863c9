from pathlib import Path

import pytest
import yaml

from hil.measure import costmodel
from hil.preflight import envfile

PLACES = Path(__file__).resolve().parents[2] / "places"


def test_a_declared_icount_goes_to_the_boards_qemu_and_marks_its_figures():
    assert costmodel.qemu_args("shift=0,sleep=off") == ["-icount", "shift=0,sleep=off"]
    assert costmodel.qemu_args(None) == []
    assert costmodel.clock({"icount": "shift=0"}) == "icount"
    assert costmodel.clock({}) == "wall"


@pytest.mark.parametrize("value", ["shift=0", "shift=0,sleep=off", "shift=3,align=on,sleep=on",
                                   None])
def test_icount_options_qemu_takes_have_no_problems(value):
    assert costmodel.problems(value) == []


@pytest.mark.parametrize(("value", "says"), [
    ("", "write QEMU's -icount sub-options as a string"),
    (0, "write QEMU's -icount sub-options as a string"),
    ("sleep=off", "name the shift"),
    ("shift=11", "shift must be 0..10"),
    ("shift=-1", "shift must be 0..10"),
    ("shift=0,sleep=no", "sleep must be on or off"),
    ("shift=0,align=on,sleep=off", "align=on needs sleep=on"),
    ("shift=0,rr=record,rrfile=x", "unknown sub-option 'rr', 'rrfile'"),
    ("shift=auto", "name a fixed shift"),
])
def test_a_bad_icount_option_says_what_to_write(value, says):
    found = costmodel.problems(value)
    assert len(found) == 1 and says in found[0], found


def test_the_cost_model_board_is_the_virtual_board_with_instruction_counting():
    plain = yaml.safe_load((PLACES / "virtual.yaml").read_text())
    counted = yaml.safe_load((PLACES / "virtual-costmodel.yaml").read_text())
    envfile.check(PLACES / "virtual-costmodel.yaml")
    options = counted["targets"]["main"].pop("options")
    del plain["targets"]["main"]["options"]
    # A CPU per vCPU of the largest guest and one for the rest, every thread pinned: the board's
    # scheduler has no choice of where the guest's vCPUs, the vhost workers and the
    # benchmark's servers run (README, "What an interrupt costs").
    assert options["board_cpus"] == 5 == max(options["bench_vcpus"]) + 1
    assert options["pin_vmm"] == {"vcpus": [0, 1, 2, 3], "others": 4}
    (board,) = [d["VirtualBoardDriver"] for d in counted["targets"]["main"]["drivers"]
                if "VirtualBoardDriver" in d]
    assert "-smp 5 " in board["extra_args"]
    board["extra_args"] = board["extra_args"].replace("-smp 5 ", "-smp 2 ")
    # The guest's shell on its PL011, where the recorded figures were measured.
    (guest_vmm,) = [d["GuestVMMDriver"] for d in counted["targets"]["main"]["drivers"]
                    if "GuestVMMDriver" in d]
    assert guest_vmm.pop("console") == "uart"
    assert counted == plain
    assert costmodel.clock(options) == costmodel.ICOUNT
