from hil.measure import procstat


def test_recorded_vmm_threads_of_a_vhost_net_run(data):
    before = procstat.parse((data / "vmm-task-stat-before.txt").read_text())
    after = procstat.parse((data / "vmm-task-stat-after.txt").read_text())
    assert sorted(after) == [175, 176, 182, 183]
    assert after[182].comm == "vhost-175" and after[182].kind == "vhost"
    # Recorded before the VMM named its threads: the vCPU thread is the one that ran the guest.
    assert after[183] == procstat.Thread(183, "qemu-system-aar", 349, 300, 311)
    assert procstat.guest_ticks(before, after) == 199
    assert procstat.host_ticks_by_kind(before, after) == {"vmm": 11 + 275, "vhost": 95}


def test_named_vcpu_threads_and_threads_that_started_during_the_run():
    line = "{tid} ({comm}) S 1 175 175 0 -1 0 0 0 0 0 {u} {s} 0 0 20 0 4 0 6 0 0 " + \
        " ".join(["0"] * 18) + " {g} 0"  # fields 25-42, then guest_time (43)
    text = "\n".join([line.format(tid=183, comm="CPU 0/KVM", u=300, s=40, g=250),
                      line.format(tid=190, comm="worker", u=2, s=1, g=0)])
    after = procstat.parse(text)
    assert after[183].kind == "vcpu" and after[183].gtime == 250 and after[190].kind == "vmm"
    assert procstat.host_ticks_by_kind({}, after) == {"vcpu": 90, "vmm": 3}


def test_cpu_seconds_of_a_process_or_thread_of_this_machine() -> None:
    import threading
    import time

    from hil.measure.procstat import cpu_seconds

    t0 = time.process_time()
    while time.process_time() - t0 < 0.2:
        pass
    assert cpu_seconds("/proc/self/stat") >= 0.15
    assert cpu_seconds(f"/proc/self/task/{threading.get_native_id()}/stat") >= 0.15
    assert cpu_seconds("/proc/999999999/stat") == 0.0
