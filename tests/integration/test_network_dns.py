"""Name resolution between the containers of a network (aardvark-dns, started by netavark), on the
real stack: a container resolves another by name at the network's gateway, again after the target
is checkpointed and restored, and nothing of aardvark-dns is left once they are removed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Amber
from tests.integration import netkit

pytestmark = [pytest.mark.root, netkit.needs_netavark]


def _aardvark_pids(amber: Amber) -> list[int]:
    """aardvark-dns processes serving this amber root (their --config is under its runroot)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"aardvark-dns") and any(str(amber.runroot).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


def _lookup(amber: Amber, capfd: pytest.CaptureFixture[str], name: str, *server: str) -> str:
    """busybox nslookup's output for `name` asked from container c1 (at `server`, else at what
    its /etc/resolv.conf names); empty when it fails."""
    capfd.readouterr()
    rc = amber("exec", "c1", "nslookup", name, *server)
    out = capfd.readouterr().out
    return out if rc == 0 else ""


def test_containers_resolve_each_other_by_name_through_checkpoint_restore(
    amber: Amber, demo_image: str, runtime: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    network, _subnet = netkit.make_network(amber)
    bridge = netkit.bridge_of(amber, network)
    info = amber.fresh_engine().networks.inspect(network)
    assert info["dns_enabled"] is True
    gateway = info["subnets"][0]["gateway"]
    for name, alias in (("c1", "one"), ("c2", "db")):
        assert amber("run", "-d", "--name", name, "--runtime", runtime, "--network", network,
                     "--network-alias", alias, demo_image, "sleep", "100000") == 0  # fmt: skip
    ip2, _mac = netkit.address(amber, "c2", network)
    assert _aardvark_pids(amber), "netavark started no aardvark-dns for the network"
    netkit.wait_for(lambda: ip2 in _lookup(amber, capfd, "c2", gateway), "c2 to resolve from c1")
    capfd.readouterr()
    assert amber("exec", "c1", "cat", "/etc/resolv.conf") == 0
    assert f"nameserver {gateway}" in capfd.readouterr().out
    assert ip2 in _lookup(amber, capfd, "c2")  # through /etc/resolv.conf
    assert ip2 in _lookup(amber, capfd, "db")  # by its --network-alias

    assert amber("checkpoint", "c2") == 0
    assert amber("restore", "c2") == 0
    assert netkit.address(amber, "c2", network)[0] == ip2
    netkit.wait_for(lambda: ip2 in _lookup(amber, capfd, "c2"), "c2 to resolve again after restore")

    archive = tmp_path / "c2.tar"
    assert amber("checkpoint", "--export", str(archive), "c2") == 0
    assert amber("rm", "c2") == 0
    assert amber("restore", "--import", str(archive)) == 0
    netkit.wait_for(lambda: ip2 in _lookup(amber, capfd, "c2"), "c2 to resolve after export and import")
    assert ip2 in _lookup(amber, capfd, "db")  # its --network-alias came back with it
    capfd.readouterr()
    assert amber("exec", "c2", "cat", "/etc/resolv.conf") == 0  # the imported container's own file
    assert f"nameserver {gateway}" in capfd.readouterr().out

    assert amber("rm", "-f", "c1", "c2") == 0
    netkit.wait_for(lambda: not _aardvark_pids(amber), "aardvark-dns to stop with the last container")
    assert amber("network", "rm", network) == 0
    netkit.assert_nothing_left(amber, [bridge])


def test_network_create_disable_dns_and_default_network_have_no_dns(amber: Amber) -> None:
    name = netkit.unique("tn")
    assert amber("network", "create", "--disable-dns", "--subnet", netkit.free_subnet(), name) == 0
    nets = amber.fresh_engine().networks
    assert nets.inspect(name)["dns_enabled"] is False
    assert nets.inspect("amber")["dns_enabled"] is False
    assert amber("network", "rm", name) == 0
