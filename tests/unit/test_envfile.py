"""The board options the testcases read are checked before anything is powered."""

from __future__ import annotations

import pytest

from hil.preflight import envfile

GOOD = {"vmms": {"stock": "/usr/bin/qemu-system-aarch64", "patched": "/opt/hil/bin/q"},
        "guest_kernels": {"patched": "/guest/Image", "debug": "/guest/Image-debug",
                          "stock": "/guest/Image-debian"},
        "throughput_iterations": 3, "throughput_seconds": 3}


def test_the_options_every_environment_file_declares_pass() -> None:
    assert envfile.option_problems(GOOD) == []


@pytest.mark.parametrize(("change", "says"), [
    ({"vmms": "/usr/bin/qemu"}, "vmms must map stock, patched to absolute paths"),
    ({"vmms": {"stock": "/q"}}, "vmms lacks patched"),
    ({"guest_kernels": {**GOOD["guest_kernels"], "debug": "Image-debug"}},
     "guest_kernels.debug: 'Image-debug' is not an absolute path"),
    ({"throughput_iterations": 0}, "throughput_iterations: 0 is not a whole number"),
    ({"bench_seconds": "ten"}, "bench_seconds: 'ten' is not a whole number"),
    ({"throughput_seconds": True}, "throughput_seconds: True is not a whole number"),
    ({"bench_vcpus": 4}, "bench_vcpus: 4: write the guest sizes to measure as a list"),
    ({"bench_wirings": ["vhost-net", "irqfd"]},
     "bench_wirings: ['vhost-net', 'irqfd']: write a list of wirings to measure, from "
     "virtio-net, vhost-net"),
    ({"bench_vcpus": [1, 0]}, "bench_vcpus: [1, 0]: write the guest sizes"),
    ({"bench_udp_pps": -1}, "bench_udp_pps: -1: datagrams a second in each flow"),
    ({"bench_iothread": "id=io1"}, "bench_iothread: 'id=io1': QEMU iothread properties"),
    ({"bench_iothread": "poll-max-ns"}, "bench_iothread: 'poll-max-ns': QEMU iothread"),
    ({"bench_vcpus": [1, 4], "pin_vmm": {"vcpus": [0, 1], "others": 2}},
     "bench_vcpus: 4 vCPUs, but pin_vmm.vcpus places 2: give each vCPU its board CPU"),
    ({"bench_wirings": ["vhost-net"], "thresholds": {"vhost-net_tps_over_virtio-net": 1}},
     "bench_wirings leaves out virtio-net, which threshold 'vhost-net_tps_over_virtio-net' "
     "names"),
    ({"bench_vcpus": [2, 4], "thresholds": {"vhost-net_min_tps": 1}},
     "the thresholds are taken with one vCPU; measure it too (add 1)"),
])
def test_each_bad_option_is_named(change, says) -> None:
    options = {**GOOD, **change}
    found = envfile.option_problems(options)
    assert any(says in p for p in found), found


def test_options_left_out_are_not_checked() -> None:
    assert envfile.option_problems({}) == []


def test_an_unknown_target_name_is_refused_before_any_wait(tmp_path) -> None:
    env = tmp_path / "env.yaml"
    env.write_text("targets:\n  alpha: {}\n  beta: {}\n")
    envfile.check_target_name(env, None)
    envfile.check_target_name(env, "beta")
    with pytest.raises(envfile.ConfigError, match="gamma: the environment has no such target "
                                                  r"\(it has alpha, beta\)"):
        envfile.check_target_name(env, "gamma")


@pytest.mark.parametrize(("settings", "says"), [
    ({"serial": "stdio"}, "GuestVMMDriver serial 'stdio': write where the guest's console goes"),
    ({"console": "hvc"}, "GuestVMMDriver console 'hvc': write one of virtio, uart"),
])
def test_a_guest_console_qemu_cannot_take_is_named_before_power_on(settings, says) -> None:
    for drivers in ([{"ShellDriver": {}}, {"GuestVMMDriver": settings}],
                    {"GuestVMMDriver": settings}):
        found = envfile.problems({"targets": {"main": {"drivers": drivers}}})
        assert len(found) == 1 and found[0].startswith(f"target 'main': {says}"), found
    assert envfile.problems({"targets": {"main": {"drivers": [{"GuestVMMDriver": None}]}}}) == []
    # On its PL011 alone the guest's serial is QEMU's -serial as written.
    uart = {"GuestVMMDriver": {"serial": "pty", "console": "uart"}}
    assert envfile.problems({"targets": {"main": {"drivers": [uart]}}}) == []
