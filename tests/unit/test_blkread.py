import pytest

from hil.measure import blkread

OUT = """cpu 1 reads 1200 errors 0 seconds 1.000020
cpu 0 reads 1300 errors 0 seconds 1.000100
total reads 2500 errors 0 seconds 1.000100
"""


def test_each_reader_and_the_total_parse_into_iops_and_reads_per_cpu():
    r = blkread.parse(OUT)
    assert r.reads == 2500 and r.per_cpu == {0: 1300, 1: 1200}
    assert r.iops == pytest.approx(2500 / 1.0001)


def test_failed_reads_are_an_error_not_a_slower_figure():
    with pytest.raises(blkread.BlkReadError, match="reads failed"):
        blkread.parse("cpu 0 reads 10 errors 3 seconds 1.0\ntotal reads 10 errors 3 seconds 1.0\n")


def test_no_result_names_what_the_tool_printed():
    with pytest.raises(blkread.BlkReadError, match="No such file"):
        blkread.parse("hil-blkread: /dev/vda: No such file or directory\n"
                      "total reads 0 errors 0 seconds 0.000000\n")


def test_readers_that_do_not_add_up_to_the_total_are_an_error():
    with pytest.raises(blkread.BlkReadError, match="do not add up"):
        blkread.parse("cpu 0 reads 10 errors 0 seconds 1.0\ntotal reads 11 errors 0 seconds 1.0\n")


def test_the_command_names_device_time_and_readers():
    assert blkread.command("/dev/vda", 1, 4) == "hil-blkread /dev/vda 1 4"
