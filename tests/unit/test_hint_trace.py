from hil.measure import hint_trace

TRACE = """\
# tracer: nop
#
 <...>-57 [001] ..... 41.201911: hint: (__irq_apply_affinity_hint+0x0/0x9c) irq=15 mask=0x0
 <...>-57 [001] ..... 41.202014: hint: (__irq_apply_affinity_hint+0x0/0x9c) irq=16 mask=0xffff000003c1b200
 bash-57 [001] ..... 41.202100: vring: (vring_interrupt+0x0/0xb8) irq=16 vq=0xffff000003c1b000
"""


def test_each_hint_set_or_cleared_is_read_with_its_line():
    hints = hint_trace.parse(TRACE)
    assert [(h.irq, h.cleared) for h in hints] == [(15, True), (16, False)]


def test_a_trace_without_the_probe_has_no_hint():
    assert hint_trace.parse("# tracer: nop\n") == []
