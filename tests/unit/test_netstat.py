from hil.measure import netstat

# A guest's /proc/net/softnet_stat with 2 CPUs (Linux 6.12: 13 columns, the CPU 13th).
ZEROS = " ".join(["00000000"] * 11)
BEFORE = (f"00000001 {ZEROS} 00000000 00000000 00000000\n"
          f"00000000 {ZEROS} 00000001 00000000 00000000\n")
AFTER = (f"000035b1 {ZEROS} 00000000 00000000 00000000\n"
         f"00003520 {ZEROS} 00000001 00000000 00000000\n")
UDP_HEAD = ("Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors "
            "InCsumErrors IgnoredMulti MemErrors\n")


def test_packets_each_cpus_stack_took_in_during_a_run():
    assert netstat.parse_softnet(AFTER) == {0: 0x35b1, 1: 0x3520}
    assert netstat.softnet_delta(netstat.parse_softnet(BEFORE),
                                 netstat.parse_softnet(AFTER)) == {0: 13744, 1: 13600}


def test_a_counter_that_wrapped_still_counts_forward():
    assert netstat.softnet_delta({0: 0xFFFFFFF0}, {0: 0x10}) == {0: 0x20}


def test_where_the_datagrams_of_a_flood_went():
    # Measured on the cost-model board, 4 vCPUs, a line per queue, one virtual second.
    guest = (netstat.parse_udp(UDP_HEAD + "Udp: 0 0 0 0 0 0 0 0 0\n"),
             netstat.parse_udp(UDP_HEAD + "Udp: 9715 0 44287 4 44287 0 0 0 0\n"))
    board = (netstat.parse_udp(UDP_HEAD + "Udp: 0 0 0 0 0 0 0 0 0\n"),
             netstat.parse_udp(UDP_HEAD + "Udp: 4 0 0 105234 0 0 0 0 0\n"))
    f = netstat.flood(board, guest, (netstat.parse_softnet(BEFORE), netstat.parse_softnet(AFTER)),
                      1.0)
    assert (f.sent, f.delivered, f.socket_full) == (105234, 9715, 44287)
    assert f.stack_per_s == 13744 + 13600
    assert round(f.loss, 3) == round(1 - 9715 / 105234, 3)


def test_no_udp_counters_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="no Udp: counters"):
        netstat.parse_udp("Tcp: 1 2\n")
