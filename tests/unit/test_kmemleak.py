from hil.measure import kmemleak


def test_each_suspected_leak_comes_with_its_backtrace(data):
    found = kmemleak.leaks((data / "kmemleak-report.txt").read_text())
    assert len(found) == 2
    assert found[0].startswith("unreferenced object 0xffff000003c5d800 (size 128):")
    assert "vm_find_vqs+0x1a8/0x4d0" in found[0] and "vm_request_irqs" in found[1]


def test_an_empty_report_has_no_leaks():
    assert kmemleak.leaks("") == []
