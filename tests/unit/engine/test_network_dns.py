"""Networks with DNS (aardvark-dns) without root: the record, what netavark is told, the CLI flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amber import cli
from amber.adapters import netavark
from amber.config import Layout
from amber.engine import attachments as attach
from amber.engine.networks import DEFAULT_NETWORK, Network, NetworkService
from amber.errors import UsageError
from tests.unit.engine.test_networks import CID, FakeNetavark


@pytest.fixture
def fake() -> FakeNetavark:
    return FakeNetavark()


@pytest.fixture
def nets(tmp_path: Path, fake: FakeNetavark) -> NetworkService:
    routes = tmp_path / "route"
    routes.write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n")
    return NetworkService(Layout(tmp_path / "root", tmp_path / "run"), runner=fake, route_file=routes)


def test_dns_network_tells_netavark_dns_enabled_and_the_container_name(
    nets: NetworkService, fake: FakeNetavark, tmp_path: Path
) -> None:
    nets.create("dnsnet", "10.89.7.0/24", dns=True)
    nets.attach(CID, "web", tmp_path / "ns", "dnsnet")
    options = fake.setups[0][1]
    assert options["network_info"]["dnsnet"]["dns_enabled"] is True
    assert options["container_name"] == "web"  # netavark registers it with aardvark-dns
    assert nets.inspect("dnsnet")["dns_enabled"] is True


def test_networks_without_dns_say_so(nets: NetworkService, fake: FakeNetavark, tmp_path: Path) -> None:
    nets.create("plain", "10.89.8.0/24")
    nets.attach(CID, "web", tmp_path / "ns", "plain")
    assert fake.setups[0][1]["network_info"]["plain"]["dns_enabled"] is False
    assert nets.inspect(DEFAULT_NETWORK)["dns_enabled"] is False  # podman's default network has none either


def test_records_without_dns_enabled_read_as_off() -> None:
    old = {"name": "n", "id": "i", "bridge": "b", "subnet": "10.89.9.0/24", "gateway": "10.89.9.1"}
    assert Network.from_dict(old).dns_enabled is False
    assert Network.from_dict({**old, "dns_enabled": True}).info().dns_enabled is True


def test_netavark_gets_the_aardvark_binary_and_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_tool = tmp_path / "aardvark-dns"
    fake_tool.write_text("#!/bin/sh\n")
    fake_tool.chmod(0o755)
    monkeypatch.setenv("AMBER_AARDVARK_DNS", str(fake_tool))
    monkeypatch.setenv("AMBER_NETAVARK", str(fake_tool))
    argv = netavark._argv(tmp_path / "cfg", "setup", tmp_path / "ns")
    assert argv[argv.index("--aardvark-binary") + 1] == str(fake_tool)
    assert argv[argv.index("--config") + 1] == str(tmp_path / "cfg")
    assert argv[-2:] == ["setup", str(tmp_path / "ns")]


def test_cli_network_create_has_dns_unless_disabled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def amber(*argv: str) -> int:
        return cli.main(["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), *argv])

    assert amber("network", "create", "--subnet", "10.89.61.0/24", "withdns") == 0
    assert amber("network", "create", "--disable-dns", "--subnet", "10.89.62.0/24", "nodns") == 0
    capsys.readouterr()
    assert amber("network", "inspect", "withdns", "nodns") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [n["dns_enabled"] for n in shown] == [True, False]


def test_resolv_conf_names_the_gateway_only_on_a_dns_network(nets: NetworkService, tmp_path: Path) -> None:
    nets.create("dnsnet", "10.89.7.0/24", dns=True)
    nets.create("plain", "10.89.8.0/24")
    path = tmp_path / "resolv.conf"
    assert attach.resolv_conf(nets, attach.Attachments(network="dnsnet"), path) == path
    assert "nameserver 10.89.7.1\n" in path.read_text()
    assert attach.resolv_mount(path)["destination"] == "/etc/resolv.conf"
    assert attach.resolv_conf(nets, attach.Attachments(network="plain"), path) is None
    assert not path.exists()
    assert attach.resolv_conf(nets, attach.Attachments(), path) is None  # --network none


def test_network_aliases_reach_netavark_and_the_record(
    nets: NetworkService, fake: FakeNetavark, tmp_path: Path
) -> None:
    att = attach.Attachments.parse("dnsnet", aliases=["db", "cache"])
    assert attach.Attachments.from_dict(att.to_dict()).aliases == ("db", "cache")
    assert attach.config_fields(att, None)["newNetworks"]["dnsnet"]["aliases"] == ["db", "cache"]
    nets.create("dnsnet", "10.89.7.0/24", dns=True)
    attach.connect(nets, CID, "web", tmp_path / "ns", att, tmp_path / "status.json")
    assert fake.setups[0][1]["networks"]["dnsnet"]["aliases"] == ["db", "cache"]
    assert nets.attachments(CID)["dnsnet"].aliases == ("db", "cache")
    nets.detach(CID)
    assert fake.teardowns[0][1]["networks"]["dnsnet"]["aliases"] == ["db", "cache"]


def test_network_alias_needs_a_network() -> None:
    with pytest.raises(UsageError) as err:
        attach.Attachments.parse("none", aliases=["db"])
    assert "--network-alias" in err.value.message and err.value.hint
