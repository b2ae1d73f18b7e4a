"""Services with a network identity and data through checkpoint and restore, on the real stack
(issue 12's acceptance): a published HTTP port, a TCP connection from another namespace, a named
volume moved to a fresh amber root, podman's archives onto a network of their subnet.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from amber.errors import ExitCode
from tests.conftest import FIXTURES, Amber
from tests.integration import netkit
from tests.integration.netkit import HTTPD

pytestmark = [pytest.mark.root, netkit.needs_netavark]


def test_published_http_port_answers_again_after_export_rm_import(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    network, _subnet = netkit.make_network(amber)
    bridge = netkit.bridge_of(amber, network)
    port = netkit.free_port()
    assert (
        amber(
            "run", "-d", "--name", "web", "--runtime", runtime, "--network", network,
            "-p", f"127.0.0.1:{port}:8080", demo_image, "sh", "-c", HTTPD.format(text="hello"),
        )
        == 0
    )  # fmt: skip
    assert netkit.fetch(port) == "hello"
    before = netkit.address(amber, "web", network)
    archive = tmp_path / "web.tar.zst"
    assert amber("checkpoint", "--export", str(archive), "web") == 0
    assert netkit.refused(port)  # torn down with the container's network
    assert amber("rm", "web") == 0
    assert amber.fresh_engine().networks.leases(network) == []

    assert amber("restore", "--import", str(archive)) == 0
    assert netkit.fetch(port) == "hello"
    assert netkit.address(amber, "web", network) == before

    assert amber("rm", "-f", "web") == 0
    assert amber("network", "rm", network) == 0
    netkit.assert_nothing_left(amber, [bridge])


def _serve_lines(amber: Amber, image: str, runtime: str, network: str, port: int) -> None:
    script = "sleep 100000 | busybox nc -l -p 7000 > /tmp/got"
    assert (
        amber(
            "run", "-d", "--name", "srv", "--runtime", runtime, "--network", network,
            "-p", f"{port}:7000", image, "sh", "-c", script,
        )
        == 0
    )  # fmt: skip


def _got(amber: Amber) -> list[str]:
    c = amber.fresh_engine().containers.store.get("srv")
    path = amber.fresh_engine().containers.paths(c.id).upper / "tmp" / "got"
    return path.read_text().split() if path.exists() else []


def test_tcp_connection_from_another_namespace_survives_checkpoint_and_restore(
    amber: Amber, demo_image: str, runtime: str
) -> None:
    """NAT'd (through the published port), with the host's conntrack entry of the connection gone
    while the container is away (as on another host): CRIU's lock and the recorded entry keep it."""
    network, subnet = netkit.make_network(amber)
    bridge = netkit.bridge_of(amber, network)
    port = netkit.free_port()
    _serve_lines(amber, demo_image, runtime, network, port)
    ip, _mac = netkit.address(amber, "srv", network)
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    lines = 80
    feed = f"i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo line$i; sleep 0.05; done"
    with netkit.client_on(bridge, subnet) as client:
        sender = client.run("sh", "-c", f"({feed}) | busybox nc {gateway} {port}", stdout=subprocess.PIPE)
        netkit.wait_for(lambda: len(_got(amber)) >= 5, "the first lines")
        assert amber("checkpoint", "--tcp-established", "srv") == 0
        client.link(False)  # the client's packets wait while the container moves
        subprocess.run(["conntrack", "-D", "-p", "tcp", "-r", ip], capture_output=True, check=False)
        assert amber("restore", "--tcp-established", "srv") == 0
        client.link(True)
        assert sender.wait(timeout=60) == 0
        netkit.wait_for(lambda: len(_got(amber)) == lines, f"all {lines} lines on one connection")
        assert _got(amber) == [f"line{i}" for i in range(1, lines + 1)]
        c = amber.fresh_engine().containers.store.get("srv")
        netns = amber.fresh_engine().containers.paths(c.id).netns
        rules = netkit.run_ok("nsenter", f"--net={netns}", "iptables", "-S")
        assert "CRIU" not in rules  # the lock is gone again
    assert amber("rm", "-f", "srv") == 0
    netkit.assert_nothing_left(amber, [bridge])


def test_named_volume_data_comes_back_on_a_fresh_amber_root(
    amber: Amber, demo_image: str, demo_rootfs: Path, runtime: str, tmp_path: Path
) -> None:
    script = "echo precious > /data/file; mkdir /data/sub; echo deep > /data/sub/f; exec sleep 100000"
    assert (
        amber(
            "run", "-d", "--name", "db", "--runtime", runtime, "--network", "none",
            "-v", "dbdata:/data", demo_image, "sh", "-c", script,
        )
        == 0
    )  # fmt: skip
    data = amber.fresh_engine().volumes.get("dbdata").mountpoint
    netkit.wait_for(lambda: (Path(data) / "sub" / "f").exists(), "the volume's data")
    archive = tmp_path / "db.tar"
    assert amber("checkpoint", "--export", str(archive), "-c", "none", "db") == 0
    members = subprocess.run(["tar", "tf", str(archive)], capture_output=True, text=True, check=True).stdout
    assert "volumes/dbdata.tar" in members.split()

    fresh = Amber(tmp_path / "fresh-root", tmp_path / "fresh-run")
    try:
        fresh.engine.images.import_image(demo_rootfs, demo_image)
        assert fresh("restore", "--import", str(archive)) == 0
        volume = Path(fresh.fresh_engine().volumes.get("dbdata").mountpoint)
        assert (volume / "file").read_text() == "precious\n"
        assert (volume / "sub" / "f").read_text() == "deep\n"
        inspect = fresh.fresh_engine().containers.inspect("db")
        assert [(m["Type"], m["Name"], m["Destination"]) for m in inspect["Mounts"]] == [("volume", "dbdata", "/data")]
    finally:
        fresh.cleanup()


@pytest.mark.parametrize("fixture", ["counter-crun.tar.zst", "counter-runc.tar"])
def test_podman_archive_restores_with_its_ip_on_a_network_of_its_subnet(
    amber: Amber, fixture: str, podman_subnet: str
) -> None:
    """podman's default network is 10.88.0.0/16; the fixtures recorded 10.88.0.5 and a MAC."""
    status = json.loads(
        subprocess.run(
            ["tar", "xOf", str(FIXTURES / fixture), "network.status"], capture_output=True, check=True
        ).stdout
    )
    iface = status["podman"]["interfaces"]["eth0"]
    ip = iface["subnets"][0]["ipnet"].split("/")[0]
    amber.engine.images.import_image(FIXTURES / "busybox-rootfs.tar", "localhost/busybox:fixture")
    network, _subnet = netkit.make_network(amber, podman_subnet)
    bridge = netkit.bridge_of(amber, network)
    assert amber("restore", "--import", str(FIXTURES / fixture)) == 0
    name = amber.fresh_engine().containers.list()[0].name
    assert netkit.address(amber, name, network) == (ip, iface["mac_address"])
    assert amber("rm", "-f", name) == 0
    assert amber("network", "rm", network) == 0
    netkit.assert_nothing_left(amber, [bridge])


def test_amber_archive_needs_its_network_here(
    amber: Amber, demo_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    network, subnet = netkit.make_network(amber)
    assert amber("run", "-d", "--name", "n1", "--network", network, demo_image, "sleep", "100000") == 0
    archive = tmp_path / "n1.tar.zst"
    assert amber("checkpoint", "--export", str(archive), "n1") == 0
    assert amber("rm", "n1") == 0
    assert amber("network", "rm", network) == 0
    capfd.readouterr()
    assert amber("restore", "--import", str(archive)) == ExitCode.NOT_FOUND
    err = capfd.readouterr().err
    assert f"needs network {network} (subnet {subnet})" in err
    assert amber.fresh_engine().containers.store.all() == []


def test_missing_bind_source_is_refused_before_any_work(
    amber: Amber, demo_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "srv-data"
    src.mkdir()
    (src / "x").write_text("x")
    assert (
        amber("run", "-d", "--name", "b1", "--network", "none", "-v", f"{src}:/srv:ro", demo_image, "sleep", "100000")
        == 0
    )
    archive = tmp_path / "b1.tar.zst"
    assert amber("checkpoint", "--export", str(archive), "b1") == 0
    assert amber("rm", "b1") == 0
    (src / "x").unlink()
    src.rmdir()
    capfd.readouterr()
    started = time.monotonic()
    assert amber("restore", "--import", str(archive)) == ExitCode.NOT_FOUND
    assert f"bind mount source {src} (at /srv)" in capfd.readouterr().err
    assert time.monotonic() - started < 10
    assert amber.fresh_engine().containers.store.all() == []


def test_archive_inspect_and_check_show_network_ports_and_volumes(
    amber: Amber, demo_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    network, subnet = netkit.make_network(amber)
    port = netkit.free_port()
    argv = ["run", "-d", "--name", "w1", "--network", network, "-p", f"127.0.0.1:{port}:80", "-v", "wdata:/data"]
    assert amber(*argv, demo_image, "sleep", "100000") == 0
    ip, _mac = netkit.address(amber, "w1", network)
    archive = tmp_path / "w1.tar.zst"
    assert amber("checkpoint", "--export", str(archive), "w1") == 0
    assert amber("rm", "w1") == 0
    archives = amber.fresh_engine().archives
    inspection = archives.inspect(archive)
    assert inspection.ports == [f"127.0.0.1:{port}:80/tcp"]
    assert inspection.volumes == ["wdata:/data"]
    assert [(n.network, n.ip) for n in inspection.networks] == [(network, f"{ip}/24")]
    capfd.readouterr()
    assert amber("archive", "inspect", str(archive)) == 0
    out = capfd.readouterr().out
    assert f"127.0.0.1:{port}:80/tcp" in out and "wdata:/data" in out

    def row() -> tuple[str, str]:
        (r,) = [r for r in amber.fresh_engine().archives.check(archive, cpu=False) if r.name == "network"]
        return str(r.status), r.reason

    assert row() == ("ok", f"network {network}: IP {ip} is free")
    assert (
        amber("run", "-d", "--name", "squatter", "--network", network, "--ip", ip, demo_image, "sleep", "100000") == 0
    )
    status, reason = row()
    assert status == "fail" and reason == f"IP {ip} of network {network} is taken by container squatter"
    assert amber("rm", "-f", "squatter") == 0
    assert amber("network", "rm", network) == 0
    status, reason = row()
    assert status == "fail" and reason == f"network {network} (subnet {subnet}) is not on this host"


def test_ps_shows_published_ports_as_podman_does(
    amber: Amber, demo_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port, udp = netkit.free_port(), netkit.free_port()
    argv = ["run", "-d", "--name", "pp", "-p", f"{port}:80", "-p", f"127.0.0.1:{udp}:53/udp", demo_image]
    assert amber(*argv, "sleep", "100000") == 0
    want = f"0.0.0.0:{port}->80/tcp, 127.0.0.1:{udp}->53/udp"
    capfd.readouterr()
    assert amber("ps") == 0
    header, row = capfd.readouterr().out.splitlines()
    assert header.split()[-1] == "PORTS" and row.endswith(want)
    assert amber("ps", "--format", "{{.Names}} {{.Ports}}") == 0
    assert capfd.readouterr().out.splitlines() == [f"pp {want}"]
    assert amber("ps", "--format", "json") == 0
    ports = json.loads(capfd.readouterr().out)[0]["Ports"]
    assert [(p["host_ip"], p["host_port"], p["container_port"], p["protocol"]) for p in ports] == [
        ("", port, 80, "tcp"),
        ("127.0.0.1", udp, 53, "udp"),
    ]
    archive = tmp_path / "pp.tar.zst"
    assert amber("checkpoint", "--export", str(archive), "pp") == 0
    assert amber("rm", "pp") == 0
    assert amber("restore", "--import", str(archive)) == 0
    capfd.readouterr()
    assert amber("ps", "--format", "{{.Ports}}") == 0
    assert capfd.readouterr().out.strip() == want
    assert amber("rm", "-f", "pp") == 0
