"""podman's own test cases for IP/MAC handling, port mappings and volumes through checkpoint and
restore (containers/podman test/system/520-checkpoint.bats, test/e2e/checkpoint_test.go), in
amber's spelling and under podman's names. podman's `--network NAME:ip=..,mac=..` is amber's
`--network NAME --ip .. --mac-address ..`; `restart` is stop then start. podman's anonymous
volumes (`-v /volume1`) are amber's too; an image's VOLUME has no amber spelling.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.errors import ExitCode
from tests.conftest import Amber
from tests.integration import netkit
from tests.integration.netkit import HTTPD

pytestmark = [pytest.mark.root, netkit.needs_netavark]


def _restart(amber: Amber, name: str) -> None:
    assert amber("stop", "-t", "2", name) == 0
    assert amber("start", name) == 0


def test_podman_checkpoint_restore_ip_and_mac_handling(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    """520-checkpoint.bats: "podman checkpoint/restore ip and mac handling"."""
    net, subnet = netkit.make_network(amber)
    bridge = netkit.bridge_of(amber, net)
    prefix = subnet.rsplit(".", 1)[0]
    run = ["run", "-d", "--runtime", runtime, "--network", net]
    assert amber(*run, "--name", "c1", demo_image, "sleep", "100000") == 0
    ip1, mac1 = netkit.address(amber, "c1", net)
    assert amber("checkpoint", "c1") == 0
    assert amber("restore", "c1") == 0
    assert netkit.address(amber, "c1", net) == (ip1, mac1)  # after restore they should be the same

    _restart(amber, "c1")  # not static: a new IP and MAC
    ip3, mac3 = netkit.address(amber, "c1", net)
    assert ip3 != ip1 and mac3 != mac1

    assert amber("checkpoint", "c1") == 0
    assert amber("restore", "--ignore-static-ip", "--ignore-static-mac", "c1") == 0
    ip4, mac4 = netkit.address(amber, "c1", net)
    assert ip4 != ip3 and mac4 != mac3

    archive = tmp_path / "checkpoint.tar.gz"
    assert amber("checkpoint", "--export", str(archive), "c1") == 0
    assert amber("rm", "-f", "c1") == 0
    assert amber("restore", "--import", str(archive)) == 0  # keeps the IP and MAC
    assert netkit.address(amber, "c1", net) == (ip4, mac4)
    assert amber("rm", "-f", "c1") == 0

    assert amber("restore", "--import", str(archive), "--name", "newcon") == 0  # a copy: new ones
    ip6, mac6 = netkit.address(amber, "newcon", net)
    assert ip6 != ip4 and mac6 != mac4
    assert amber("rm", "-f", "newcon") == 0

    static_ip, static_mac = f"{prefix}.2", "92:d0:c6:0a:29:38"
    static = ["--ip", static_ip, "--mac-address", static_mac]
    assert amber(*run, *static, "--name", "c2", demo_image, "sleep", "100000") == 0
    assert amber("checkpoint", "c2") == 0
    assert amber("restore", "--ignore-static-ip", "--ignore-static-mac", "c2") == 0
    ip7, mac7 = netkit.address(amber, "c2", net)
    assert ip7 != static_ip and mac7 != static_mac
    _restart(amber, "c2")  # the change lasts beyond the restore
    ip8, mac8 = netkit.address(amber, "c2", net)
    assert ip8 != static_ip and mac8 != static_mac and ip8 != ip7
    assert amber("rm", "-f", "c2") == 0

    assert amber(*run, *static, "--name", "c3", demo_image, "sleep", "100000") == 0
    assert amber("checkpoint", "--export", str(archive), "c3") == 0
    assert amber("rm", "-f", "c3") == 0
    assert amber("restore", "--import", str(archive)) == 0
    assert netkit.address(amber, "c3", net) == (static_ip, static_mac)
    _restart(amber, "c3")
    assert netkit.address(amber, "c3", net) == (static_ip, static_mac)
    assert amber("rm", "-f", "c3") == 0

    assert amber("restore", "--ignore-static-ip", "--ignore-static-mac", "--import", str(archive)) == 0
    ip11, mac11 = netkit.address(amber, "c3", net)
    assert ip11 != static_ip and mac11 != static_mac
    _restart(amber, "c3")
    ip12, mac12 = netkit.address(amber, "c3", net)
    assert ip12 != static_ip and mac12 != static_mac and ip12 != ip11
    assert amber("rm", "-f", "c3") == 0
    assert amber("network", "rm", net) == 0
    netkit.assert_nothing_left(amber, [bridge])


def test_podman_checkpoint_export_with_volumes(
    amber: Amber, demo_image: str, demo_rootfs: Path, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """520-checkpoint.bats: "podman checkpoint --export, with volumes" (a container of one root,
    a web server on a published port with its data on a volume, restored into another root)."""
    first = Amber(tmp_path / "testroot" / "root", tmp_path / "testroot" / "runroot")
    try:
        first.engine.images.import_image(demo_rootfs, demo_image)
        assert first("volume", "create", "myvol") == 0
        port = netkit.free_port()
        script = "echo c_web > cname; exec busybox httpd -f -p 80 -h /myvol"
        argv = ["run", "-d", "--name", "c_web", "--runtime", runtime, "-v", "myvol:/myvol", "-p", f"{port}:80"]
        assert first(*argv, "-w", "/myvol", demo_image, "sh", "-c", script) == 0
        assert netkit.fetch(port, "/cname") == "c_web"
        archive = tmp_path / "c_web.tar.gz"
        assert first("checkpoint", "--ignore-rootfs", "--export", str(archive), "c_web") == 0
        assert netkit.refused(port)  # cannot connect while the container is down
        assert first("rm", "-f", "c_web") == 0
    finally:
        first.cleanup()
    amber.engine.images.import_image(demo_rootfs, demo_image)
    assert amber("restore", "--import", str(archive)) == 0
    assert netkit.fetch(port, "/cname") == "c_web"
    capfd.readouterr()
    assert amber("exec", "c_web", "cat", "/myvol/cname") == 0
    assert capfd.readouterr().out.strip() == "c_web"  # volume transferred fine
    assert amber("rm", "-f", "c_web") == 0
    assert amber("volume", "rm", "myvol") == 0


def test_podman_checkpoint_and_restore_container_with_different_port_mappings(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    """checkpoint_test.go: "podman checkpoint and restore container with different port mappings"."""
    port, new_port = netkit.free_port(), netkit.free_port()
    argv = ["run", "-d", "--name", "redis", "--runtime", runtime, "-p", f"{port}:8080", demo_image]
    assert amber(*argv, "sh", "-c", HTTPD.format(text="ready")) == 0
    assert netkit.fetch(port) == "ready"
    archive = tmp_path / "checkpoint.tar.gz"
    assert amber("checkpoint", "redis", "-e", str(archive)) == 0
    assert amber("rm", "redis") == 0
    assert amber("restore", "-p", f"{new_port}:8080", "-i", str(archive)) == 0
    assert netkit.refused(port)  # the initial mapping is gone
    assert netkit.fetch(new_port) == "ready"
    inspect = amber.fresh_engine().containers.inspect("redis")
    assert inspect["NetworkSettings"]["Ports"] == {"8080/tcp": [{"HostIp": "", "HostPort": str(new_port)}]}
    assert amber("rm", "-f", "redis") == 0


def test_podman_checkpoint_a_container_with_volumes(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """checkpoint_test.go: "podman checkpoint a container with volumes" (its named volume)."""
    argv = ["run", "-d", "--name", "cv", "--runtime", runtime, "-v", "my-test-vol:/volume2", demo_image]
    assert amber(*argv, "sleep", "100000") == 0
    assert amber("exec", "cv", "sh", "-c", "echo cv-data > /volume2/test.output") == 0
    archive = tmp_path / "checkpoint.tar.gz"
    assert amber("checkpoint", "cv", "-e", str(archive)) == 0
    assert amber("rm", "cv") == 0
    capfd.readouterr()
    # the named volume still exists: refused
    assert amber("restore", "-i", str(archive)) == ExitCode.CONFLICT
    assert (
        "volume with name my-test-vol already exists. Use --ignore-volumes to not restore content of volumes"
        in capfd.readouterr().err
    )
    assert amber.fresh_engine().containers.store.all() == []
    assert amber("volume", "rm", "my-test-vol") == 0
    assert amber("restore", "-i", str(archive)) == 0
    capfd.readouterr()
    assert amber("exec", "cv", "cat", "/volume2/test.output") == 0
    assert capfd.readouterr().out.strip() == "cv-data"
    assert amber("rm", "-f", "cv") == 0

    # --ignore-volumes (podman's restore flag): the existing volume is used as it is
    vol = Path(amber.fresh_engine().volumes.get("my-test-vol").mountpoint)
    (vol / "test.output").write_text("changed since\n")
    assert amber("restore", "-i", str(archive), "--ignore-volumes") == 0
    capfd.readouterr()
    assert amber("exec", "cv", "cat", "/volume2/test.output") == 0
    assert capfd.readouterr().out.strip() == "changed since"
    assert amber("rm", "-f", "cv") == 0
    assert amber.fresh_engine().containers.list(all_containers=True) == []


def test_anonymous_volume_goes_with_its_container_and_through_export_import(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """podman's `-v /volume1` (520-checkpoint.bats' anonymous volume): amber names it, carries it
    in the archive, and removes it with the container on rm -v and --rm (named ones stay)."""
    argv = ["run", "-d", "--name", "anon", "--runtime", runtime, "--network", "none", "-v", "/volume1"]
    assert amber(*argv, "-v", "keep-me:/volume2", demo_image, "sleep", "100000") == 0
    assert amber("exec", "anon", "sh", "-c", "echo anon-data > /volume1/f") == 0
    mounts = amber.fresh_engine().containers.inspect("anon")["Mounts"]
    (name,) = [m["Name"] for m in mounts if m["Destination"] == "/volume1"]
    assert len(name) == 64 and amber.fresh_engine().volumes.get(name).anonymous
    archive = tmp_path / "anon.tar.gz"
    assert amber("checkpoint", "anon", "-e", str(archive)) == 0
    assert amber("rm", "-v", "anon") == 0
    volumes = amber.fresh_engine().volumes
    assert not volumes.exists(name) and volumes.exists("keep-me")  # rm -v: the anonymous one only
    assert amber("volume", "rm", "keep-me") == 0

    assert amber("restore", "-i", str(archive)) == 0
    capfd.readouterr()
    assert amber("exec", "anon", "cat", "/volume1/f") == 0
    assert capfd.readouterr().out.strip() == "anon-data"
    assert amber.fresh_engine().volumes.get(name).anonymous  # still the container's own
    assert amber("rm", "-f", "anon") == 0
    assert amber.fresh_engine().volumes.exists(name)  # rm without -v keeps it, as podman's
    assert amber("volume", "rm", name) == 0
    assert amber("volume", "rm", "keep-me") == 0

    assert amber("run", "--rm", "--name", "once", "--network", "none", "-v", "/scratch", demo_image, "true") == 0
    netkit.wait_for(lambda: amber.fresh_engine().containers.store.all() == [], "--rm to remove the container")
    assert amber.fresh_engine().volumes.list() == []  # --rm took its anonymous volume with it
