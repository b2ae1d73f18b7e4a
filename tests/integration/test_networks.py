"""Networks and volumes on the real stack: netavark, nftables, a namespace, a TCP server in it.

Each test uses its own amber root, network name, bridge and subnet (10.89.128-254.0/24, free of
the host's routes and of every test session's: tests/subnets.py), and checks that nothing is
left: no bridge or veth, no nft rule, no lease. Addresses are only configured on netavark's
bridge and inside the test's namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.adapters import netns
from amber.config import Layout
from amber.engine import mount_specs
from amber.engine.networks import NetworkService, PortMapping
from amber.engine.volumes import VolumeService
from tests.integration import netkit

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not os.access("/usr/lib/podman/netavark", os.X_OK) or shutil.which("nft") is None,
        reason="needs netavark and nft (scripts/setup-host.sh)",
    ),
]


_free_subnet = netkit.free_subnet
_free_port = netkit.free_port


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    lay = Layout(tmp_path / "root", tmp_path / "run")
    lay.ensure()
    yield lay
    for ns in lay.netns.glob("*"):
        netns.remove(ns)


def _serve_once(ns: Path) -> subprocess.Popen[bytes]:
    """busybox nc inside the namespace: it prints what the first client sends, then exits."""
    server = subprocess.Popen(["nsenter", f"--net={ns}", "busybox", "nc", "-l", "-p", "8080"], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until it listens
        ss = subprocess.run(["nsenter", f"--net={ns}", "busybox", "netstat", "-ltn"], capture_output=True, text=True)
        if ":8080 " in ss.stdout:
            break
        time.sleep(0.05)
    return server


def test_published_port_reaches_a_server_in_the_namespace(layout: Layout) -> None:
    nets = NetworkService.from_layout(layout)
    name, subnet, port = f"t{os.getpid()}{random.randint(0, 9999)}", _free_subnet(), _free_port()
    network = nets.create(name, subnet)
    ns = netns.create(layout.netns / "c1")
    cid = os.urandom(32).hex()
    try:
        status = nets.attach(cid, "c1", ns, name, ports=[PortMapping.from_string(f"127.0.0.1:{port}:8080")])
        [ip] = status.addresses(name)
        assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(subnet)
        assert f"{network.bridge}:" in _links()
        inside = subprocess.run(["nsenter", f"--net={ns}", "ip", "-o", "addr"], capture_output=True, text=True)
        assert f"inet {ip}/24" in inside.stdout
        assert status.networks[name].interfaces["eth0"].mac_address == nets.leases(name)[0].mac
        server = _serve_once(ns)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"hello through the published port\n")
        out, _ = server.communicate(timeout=10)
        assert out == b"hello through the published port\n"
        assert str(port) in _ruleset()
    finally:
        nets.detach(cid)
    assert nets.leases(name) == []
    assert network.bridge not in _links()
    rules = _ruleset()
    assert subnet not in rules and network.bridge not in rules and f"dport {port} " not in rules
    veths = subprocess.run(["nsenter", f"--net={ns}", "ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "eth0" not in veths
    nets.remove(name)
    assert name not in [n.name for n in nets.list()]


@pytest.mark.parametrize("leave_file", [False, True], ids=["file-gone", "file-unmounted"])
def test_detach_after_the_namespace_is_gone(layout: Layout, leave_file: bool) -> None:
    """A container removed before its network (or half removed, its namespace file left behind
    unmounted): detach still removes every trace."""
    nets = NetworkService.from_layout(layout)
    name, subnet, port = f"g{os.getpid()}{random.randint(0, 9999)}", _free_subnet(), _free_port()
    network = nets.create(name, subnet)
    ns = netns.create(layout.netns / "gone")
    cid = os.urandom(32).hex()
    nets.attach(cid, "gone", ns, name, ip=str(ipaddress.IPv4Network(subnet)[77]), ports=[PortMapping(port, 80)])
    netns.remove(ns)
    if leave_file:
        ns.touch()
    try:
        nets.detach(cid)
    finally:
        with contextlib.suppress(Exception):
            nets.remove(name, is_live=lambda _cid: False)
    assert network.bridge not in _links()
    rules = _ruleset()
    assert subnet not in rules and f"dport {port} " not in rules
    assert not list(layout.netns.glob("standin-*"))


def test_volume_export_remove_import(layout: Layout, tmp_path: Path) -> None:
    vols = VolumeService.from_layout(layout)
    [mount] = mount_specs.oci_mounts(mount_specs.parse(["pgdata:/var/lib/data"]), vols)
    target = tmp_path / "container-view"
    target.mkdir()
    subprocess.run(["mount", "--bind", mount["source"], str(target)], check=True)
    try:  # write through the bind mount, as the container would
        (target / "db").mkdir()
        (target / "db" / "rows").write_bytes(b"row 1\nrow 2\n")
        os.chmod(target, 0o700)
    finally:
        subprocess.run(["umount", str(target)], check=True)
    archive = tmp_path / "pgdata.tar"
    with archive.open("wb") as out:
        vols.export("pgdata", out)
    vols.remove("pgdata")
    assert not vols.exists("pgdata")
    with archive.open("rb") as src:
        vol = vols.import_("pgdata", src, archive_name=str(archive))
    assert (Path(vol.mountpoint) / "db" / "rows").read_bytes() == b"row 1\nrow 2\n"
    assert os.stat(vol.mountpoint).st_mode & 0o777 == 0o700
    vols.remove("pgdata")
