"""What the virtual lab exposes, decided before anything starts: where ser2net listens, what
the TFTP server sees, how the boards' network is made, which --listen is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.virtual_lab import boardnet, ser2net_bind, tftpd_jail
from hil.virtual_lab.supervisor import listen_problem

# What labgrid 26's exporter passes to ser2net 4.
LABGRID_ARGS = ["-d", "-n", "-Y", "connection: &con01#  accepter: telnet(rfc2217,mode=server),tcp,40123",
                "-Y", "  connector: serialdev(nouucplock=true),/dev/pts/7,115200n81,local"]


def test_ser2net_accepter_is_bound_to_the_labs_address_and_nothing_else_changes() -> None:
    cmd = ser2net_bind.command("127.0.0.1", "/usr/sbin/ser2net", LABGRID_ARGS)
    assert cmd[0] == "/usr/sbin/ser2net"
    assert cmd[4] == ("connection: &con01#  accepter: telnet(rfc2217,mode=server),"
                      "tcp,127.0.0.1,40123")
    assert cmd[1:4] == LABGRID_ARGS[:3] and cmd[5:] == LABGRID_ARGS[4:]


def test_ser2net_version_query_and_bound_accepters_pass_unchanged() -> None:
    assert ser2net_bind.command("10.1.2.3", "/s", ["-v"]) == ["/s", "-v"]
    bound = "connection: &c#  accepter: telnet,tcp,192.0.2.7,40123"
    assert ser2net_bind.bind_accepter(bound, "10.1.2.3") == bound


def test_the_ser2net_wrapper_is_what_a_path_lookup_finds(tmp_path: Path) -> None:
    import shutil

    wrapper = ser2net_bind.install(tmp_path / "bin", "127.0.0.1", "/usr/sbin/ser2net")
    assert shutil.which("ser2net", path=str(wrapper.parent)) == str(wrapper)
    assert "127.0.0.1 /usr/sbin/ser2net" in wrapper.read_text()


def test_the_tftp_jail_mounts_each_tree_read_only_at_its_own_path(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    script = tftpd_jail.jail_script(jail, [Path("/srv/a b"), Path("/var/cache/labgrid")],
                                    ["/usr/sbin/in.tftpd", "--secure", str(jail)])
    assert f"mount --bind '/srv/a b' '{jail}/srv/a b'" in script
    assert f"mount -o remount,bind,ro '{jail}/srv/a b'" in script
    assert f"mount -o remount,bind,ro {jail}/var/cache/labgrid" in script
    assert script.splitlines()[0] == "set -e"  # a failed mount never serves an empty jail
    assert script.splitlines()[-1].startswith("exec /usr/sbin/in.tftpd --secure")


def test_the_tftp_server_is_chrooted_unprivileged_and_in_its_own_mount_namespace() -> None:
    cmd = tftpd_jail.command("/usr/sbin/in.tftpd", "10.231.69.1:69", Path("/lab/jail"),
                             [Path("/lab/tftp")], "tftp")
    assert cmd[:4] == ["unshare", "--mount", "--propagation", "private"]
    tftpd = cmd[-1].splitlines()[-1]
    assert "--secure" in tftpd and "--user tftp" in tftpd
    assert "--address 10.231.69.1:69" in tftpd


def test_the_jail_shows_each_existing_tree_once(tmp_path: Path) -> None:
    (tmp_path / "cache" / "images").mkdir(parents=True)
    (tmp_path / "tftp").mkdir()
    shown = tftpd_jail.shown_paths(tmp_path / "tftp", [
        tmp_path / "cache", tmp_path / "cache" / "images", tmp_path / "missing"])
    assert shown == [(tmp_path / "tftp").resolve(), (tmp_path / "cache").resolve()] or \
        shown == [(tmp_path / "cache").resolve(), (tmp_path / "tftp").resolve()]


def test_the_boards_network_is_a_veth_into_a_namespace_of_their_own() -> None:
    name = boardnet.veth_name(Path("/tmp/pytest-of-root/pytest-12/lab0/lab"))
    assert len(name.encode()) <= 15  # IFNAMSIZ - 1
    cmds = boardnet.setup_commands(4242, name)
    assert cmds[0][-2:] == ["netns", "4242"]
    inside = [c for c in cmds if c[0] == "nsenter"]
    assert all(c[1] == "--net=/proc/4242/ns/net" for c in inside)
    assert ["ip", "address", "add", f"{boardnet.BOARD_SIDE}/30", "dev", "eth0"] == inside[1][3:]
    # No default route inside: the veth's /30 is all a board can reach.
    assert not any("route" in c for c in cmds)
    assert boardnet.enter(4242, ["qemu"]) == ["nsenter", "--net=/proc/4242/ns/net", "--", "qemu"]


def test_the_holder_names_the_lab_directory_so_down_finds_it() -> None:
    cmd = boardnet.holder_command(Path("/tmp/x/lab"))
    assert cmd[:3] == ["unshare", "--net", "--"] and cmd[-1] == "/tmp/x/lab"


@pytest.mark.parametrize(("listen", "lab_host", "says"), [
    ("127.0.0.1", "local", None),
    ("192.0.2.2", "local", None),
    ("0.0.0.0", "local", "every network"),
    ("lab.example", "local", "one IPv4 address"),
    ("::1", "local", "one IPv4 address"),
    (boardnet.HOST_ADDRESS, "local", "boards' network"),
    ("192.0.2.2", "vm", "loopback"),
    ("127.0.0.1", "vm", None),
])
def test_listen_takes_one_address_that_is_not_the_boards(listen: str, lab_host: str,
                                                         says: str | None) -> None:
    why = listen_problem(listen, lab_host)
    assert (why is None) if says is None else (why is not None and says in why), why


def test_each_exporter_host_of_a_rack_has_its_own_link_and_reaches_the_coordinator() -> None:
    from hil import netns
    from hil.scheduling.racknet import Rack

    rack = Rack(Path("/tmp/pytest-of-root/pytest-3/rack"), 3)
    rack.network = "10.231.70"  # what start() takes when no other rack holds it
    assert rack.coordinator_address == "10.231.70.1"
    assert [rack.host_address(i) for i in range(3)] == ["10.231.70.2", "10.231.70.6",
                                                        "10.231.70.10"]
    veths = {rack.veth(i) for i in range(3)}
    assert len(veths) == 3 and all(len(v.encode()) <= 15 for v in veths)
    cmds = netns.link_commands(7, rack.veth(2), "10.231.70.9/30", "10.231.70.10/30",
                               default_via="10.231.70.9")
    # Beyond its link, a host reaches the coordinator's address through this host.
    assert cmds[-1] == netns.enter(7, ["ip", "route", "add", "default", "via", "10.231.70.9"])
    with pytest.raises(ValueError, match="1 to 64"):
        Rack(Path("/tmp/r"), 0)


def test_two_racks_on_one_machine_take_two_networks_and_a_stopped_one_frees_its_own(
        tmp_path: Path, monkeypatch) -> None:
    # Two test runs on one machine had both taken 10.231.70.0/24: one rack's exporters
    # could not reach its coordinator.
    from hil.errors import InfrastructureError
    from hil.scheduling import racknet

    monkeypatch.setattr(racknet, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(racknet, "NETWORKS", ("10.231.70", "10.231.71"))
    first, second, third = (racknet.Rack(tmp_path / n, 2) for n in ("a", "b", "c"))
    first._take_network()
    second._take_network()
    assert (first.network, second.network) == ("10.231.70", "10.231.71")
    with pytest.raises(InfrastructureError, match="held by another rack"):
        third._take_network()
    first.stop()
    third._take_network()
    assert third.coordinator_address == "10.231.70.1"
    second.stop()
    third.stop()
    # A killed rack's links outlive it (their holders do): their network is passed over.
    monkeypatch.setattr(racknet, "is_local_address", lambda address: address == "10.231.70.1")
    fourth = racknet.Rack(tmp_path / "d", 2)
    fourth._take_network()
    assert fourth.network == "10.231.71"
    fourth.stop()
