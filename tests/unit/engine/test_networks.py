"""Networks without root: port parsing, address allocation, leases, netavark's status, the CLI.

netavark is replaced by a fake that records what it was asked; its output is the status a real
netavark 1.14 printed here (tests/unit/data).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from amber import cli
from amber.adapters import netavark
from amber.adapters.netavark import NetworkOptions, NetworkStatus, PortMapping
from amber.config import Layout
from amber.engine import net_alloc
from amber.engine.networks import DEFAULT_NETWORK, NetworkService
from amber.errors import AmberError, CommandError, ConflictError, NotFoundError, UsageError

DATA = Path(__file__).parents[1] / "data"
CID = "c" * 64


class FakeNetavark:
    """Records setup/teardown calls; answers with a status shaped like netavark's."""

    def __init__(self) -> None:
        self.setups: list[tuple[Path, dict[str, Any]]] = []
        self.teardowns: list[tuple[Path | None, dict[str, Any]]] = []
        self.fail_setup = False

    def setup(
        self, netns_path: Path, options: NetworkOptions, *, config_dir: Path, timeout: float = 60
    ) -> NetworkStatus:
        self.setups.append((netns_path, options.to_dict()))
        if self.fail_setup:
            raise CommandError(["netavark", "setup"], 1, '{"error":"boom"}', "")
        (name, opts), (_, info) = next(iter(options.networks.items())), next(iter(options.network_info.items()))
        prefix = info.subnets[0].subnet.split("/")[1]
        ipnet = f"{opts.static_ips[0]}/{prefix}"
        return NetworkStatus.from_dict(
            {
                name: {
                    "interfaces": {
                        opts.interface_name: {
                            "mac_address": opts.static_mac,
                            "subnets": [{"ipnet": ipnet, "gateway": info.subnets[0].gateway}],
                        }
                    }
                }
            }
        )

    def teardown(
        self,
        netns_path: Path | None,
        options: NetworkOptions,
        *,
        config_dir: Path,
        standin_dir: Path,
        timeout: float = 60,
    ) -> None:
        self.teardowns.append((netns_path, options.to_dict()))


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    """A /proc/net/route with a default route and 192.168.1.0/24."""
    path = tmp_path / "route"
    path.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    return path


@pytest.fixture
def fake() -> FakeNetavark:
    return FakeNetavark()


@pytest.fixture
def nets(tmp_path: Path, fake: FakeNetavark, routes: Path) -> NetworkService:
    return NetworkService(Layout(tmp_path / "root", tmp_path / "run"), runner=fake, route_file=routes)


# ------------------------------------------------------------------ port mappings
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8080:80", PortMapping(8080, 80)),
        ("127.0.0.1:8080:80", PortMapping(8080, 80, "tcp", "127.0.0.1")),
        ("8053:53/udp", PortMapping(8053, 53, "udp")),
        ("[::1]:8080:80/tcp", PortMapping(8080, 80, "tcp", "::1")),
    ],
)
def test_port_mapping_parses(text: str, want: PortMapping) -> None:
    assert PortMapping.from_string(text) == want
    assert PortMapping.from_string(str(want)) == want
    assert PortMapping.from_dict(want.to_dict()) == want


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("80", "expected [IP:]HOST:CTR"),
        ("1:2:3:4", "expected [IP:]HOST:CTR"),
        ("0:80", "bad host port '0'"),
        ("8080:70000", "bad container port '70000'"),
        ("http:80", "bad host port 'http'"),
        ("8080:80/icmp", "unknown protocol 'icmp'"),
        ("300.1.1.1:8080:80", "bad host IP '300.1.1.1'"),
        ("[::1:8080:80", "unclosed ["),
    ],
)
def test_port_mapping_refuses(text: str, says: str) -> None:
    with pytest.raises(UsageError) as err:
        PortMapping.from_string(text)
    assert says in err.value.message and repr(text) in err.value.message
    assert err.value.hint


# ------------------------------------------------------------------ allocation
def test_subnet_and_gateway_checks() -> None:
    net, gw = net_alloc.parse_subnet("10.89.7.0/24")
    assert (str(net), str(gw)) == ("10.89.7.0/24", "10.89.7.1")
    assert str(net_alloc.parse_subnet("10.89.7.0/24", "10.89.7.254")[1]) == "10.89.7.254"
    for bad in ("10.89.7.1/24", "10.89.7.0/31", "fd00::/64", "nonsense"):
        with pytest.raises(UsageError):
            net_alloc.parse_subnet(bad)
    for gw_bad in ("10.89.8.1", "10.89.7.0", "10.89.7.255"):
        with pytest.raises(UsageError, match="not a host address"):
            net_alloc.parse_subnet("10.89.7.0/24", gw_bad)


def test_ip_allocation() -> None:
    net, gw = net_alloc.parse_subnet("10.89.7.0/29")  # hosts .1-.6, gateway .1
    taken = {"10.89.7.2": "a", "10.89.7.3": "b"}
    assert net_alloc.allocate_ip(net, gw, taken, None, "n") == "10.89.7.4"
    assert net_alloc.allocate_ip(net, gw, taken, "10.89.7.6", "n") == "10.89.7.6"
    with pytest.raises(ConflictError, match="already taken by container a"):
        net_alloc.allocate_ip(net, gw, taken, "10.89.7.2", "n")
    for outside in ("10.89.8.2", "10.89.7.1", "10.89.7.0", "10.89.7.7"):
        with pytest.raises(UsageError, match="not a free host address of network n"):
            net_alloc.allocate_ip(net, gw, taken, outside, "n")
    with pytest.raises(UsageError, match="not an IPv4 address"):
        net_alloc.allocate_ip(net, gw, taken, "10.89.7", "n")
    full = {f"10.89.7.{i}": "x" for i in range(2, 7)}
    with pytest.raises(ConflictError, match="no free address"):
        net_alloc.allocate_ip(net, gw, full, None, "n")


def test_mac_allocation() -> None:
    for _ in range(50):
        mac = net_alloc.allocate_mac({}, None, "n")
        first = int(mac[:2], 16)
        assert net_alloc.MAC_RE.match(mac) and first & 1 == 0 and first & 2 == 2
    assert net_alloc.allocate_mac({}, "02:42:0A:59:07:05", "n") == "02:42:0a:59:07:05"
    with pytest.raises(ConflictError, match="already taken by container a"):
        net_alloc.allocate_mac({"02:42:0a:59:07:05": "a"}, "02:42:0a:59:07:05", "n")
    for bad in ("02:42:0a:59:07", "zz:42:0a:59:07:05", "01:00:5e:00:00:01", "00:00:00:00:00:00"):
        with pytest.raises(UsageError):
            net_alloc.allocate_mac({}, bad, "n")


def test_host_routes_and_subnet_choice(routes: Path) -> None:
    routed = net_alloc.host_routes(routes)
    assert routed == [ipaddress.IPv4Network("192.168.1.0/24")]
    assert net_alloc.host_routes(routes.parent / "missing") == []
    ours = {"a": ipaddress.IPv4Network("10.89.101.0/24")}
    assert str(net_alloc.pick_subnet(ours, [ipaddress.IPv4Network("10.89.102.0/23")])) == "10.89.104.0/24"
    with pytest.raises(ConflictError, match="overlaps 192.168.1.0/24, which this host already routes"):
        net_alloc.check_subnet_free(ipaddress.IPv4Network("192.168.0.0/16"), {}, routed)


# ------------------------------------------------------------------ the service
def test_default_network_and_create(nets: NetworkService) -> None:
    [default] = nets.list()
    assert (default.name, default.subnet, default.gateway) == (DEFAULT_NETWORK, "10.89.100.0/24", "10.89.100.1")
    n1 = nets.create("n1")
    n2 = nets.create("n2", "10.77.0.0/16", "10.77.0.254")
    assert n1.subnet == "10.89.101.0/24" and (n2.subnet, n2.gateway) == ("10.77.0.0/16", "10.77.0.254")
    bridges = {n.bridge for n in nets.list()}
    assert len(bridges) == 3 and all(len(b) <= 15 and b.startswith("amb") for b in bridges)
    assert [n.name for n in nets.list()] == ["amber", "n1", "n2"]
    with pytest.raises(ConflictError, match="network n1 already exists"):
        nets.create("n1")
    with pytest.raises(ConflictError, match="overlaps network n2"):
        nets.create("n3", "10.77.3.0/24")
    with pytest.raises(ConflictError, match="this host already routes"):
        nets.create("n3", "192.168.1.128/25")
    with pytest.raises(UsageError, match="invalid name"):
        nets.create("-bad")
    with pytest.raises(UsageError, match="--gateway needs --subnet"):
        nets.create("n3", gateway="10.1.1.1")
    with pytest.raises(NotFoundError, match="no such network: nope"):
        nets.get("nope")


def test_bridge_names_differ_between_roots(tmp_path: Path, fake: FakeNetavark, routes: Path) -> None:
    a = NetworkService(Layout(tmp_path / "a", tmp_path / "ra"), runner=fake, route_file=routes)
    b = NetworkService(Layout(tmp_path / "b", tmp_path / "rb"), runner=fake, route_file=routes)
    assert a.get(DEFAULT_NETWORK).bridge != b.get(DEFAULT_NETWORK).bridge


def test_attach_leases_and_detach(nets: NetworkService, fake: FakeNetavark, tmp_path: Path) -> None:
    nets.create("web", "10.89.201.0/24")
    ns = tmp_path / "ns1"
    port = PortMapping(_free_port(), 8080, host_ip="127.0.0.1")
    status = nets.attach(CID, "c1", ns, "web", ports=[port])
    assert status.addresses("web") == ["10.89.201.2"]
    path, opts = fake.setups[-1]
    assert path == ns
    assert opts["networks"]["web"]["static_ips"] == ["10.89.201.2"]
    assert opts["networks"]["web"]["interface_name"] == "eth0"
    assert opts["network_info"]["web"]["network_interface"] == nets.get("web").bridge
    assert opts["port_mappings"] == [port.to_dict()]
    [lease] = nets.leases("web")
    assert (lease.ip, lease.container_name, lease.ports) == ("10.89.201.2", "c1", (port,))
    # a second container: the next address, its own MAC; a specific IP and MAC are honoured
    nets.attach("d" * 64, "c2", tmp_path / "ns2", "web", ip="10.89.201.50", mac="02:00:00:00:00:50")
    assert [x.ip for x in nets.leases("web")] == ["10.89.201.2", "10.89.201.50"]
    with pytest.raises(ConflictError, match="already taken by container c2"):
        nets.attach("e" * 64, "c3", tmp_path / "ns3", "web", ip="10.89.201.50")
    with pytest.raises(ConflictError, match="MAC address 02:00:00:00:00:50 of network web is already taken"):
        nets.attach("e" * 64, "c3", tmp_path / "ns3", "web", mac="02:00:00:00:00:50")
    with pytest.raises(ConflictError, match=f"host port {port.host_port}/tcp is already published by container c1"):
        nets.attach("e" * 64, "c3", tmp_path / "ns3", "web", ports=[PortMapping(port.host_port, 80)])
    with pytest.raises(ConflictError, match="already attached"):
        nets.attach(CID, "c1", ns, "web")
    # the same container on a second network gets eth1
    with pytest.raises(UsageError, match="interface name 'eth0' is taken"):
        nets.attach(CID, "c1", ns, DEFAULT_NETWORK, interface="eth0")
    nets.attach(CID, "c1", ns, DEFAULT_NETWORK)
    assert nets.attachments(CID)[DEFAULT_NETWORK].interface == "eth1"
    assert set(nets.inspect("web")["containers"]) == {CID, "d" * 64}
    with pytest.raises(ConflictError, match="in use by container"):
        nets.remove("web")
    nets.detach(CID)
    assert fake.teardowns[-2][1]["networks"]["amber"]["interface_name"] == "eth1"
    assert fake.teardowns[-1][0] == ns and fake.teardowns[-1][1]["port_mappings"] == [port.to_dict()]
    assert nets.attachments(CID) == {}
    assert [x.container_name for x in nets.leases("web")] == ["c2"]
    nets.detach(CID)  # nothing left: nothing happens
    nets.remove("web", is_live=lambda cid: cid != "d" * 64)  # c2 is gone: its lease is torn down
    assert fake.teardowns[-1][1]["container_name"] == "c2"
    with pytest.raises(NotFoundError):
        nets.get("web")
    with pytest.raises(ConflictError, match="default network"):
        nets.remove(DEFAULT_NETWORK)


def test_failed_setup_releases_the_lease(nets: NetworkService, fake: FakeNetavark, tmp_path: Path) -> None:
    fake.fail_setup = True
    with pytest.raises(CommandError):
        nets.attach(CID, "c1", tmp_path / "ns", DEFAULT_NETWORK, ip="10.89.100.9")
    assert nets.leases(DEFAULT_NETWORK) == []
    assert len(fake.teardowns) == 1  # whatever netavark made is undone
    fake.fail_setup = False
    assert nets.attach(CID, "c1", tmp_path / "ns", DEFAULT_NETWORK, ip="10.89.100.9").addresses("amber") == [
        "10.89.100.9"
    ]


def test_parallel_attaches_get_distinct_addresses(nets: NetworkService, tmp_path: Path) -> None:
    nets.create("busy", "10.89.202.0/24")
    errors: list[BaseException] = []

    def attach(i: int) -> None:
        try:
            service = NetworkService(nets.layout, runner=nets.runner, route_file=nets.route_file)
            service.attach(f"{i:064d}", f"c{i}", tmp_path / f"ns{i}", "busy")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    leases = nets.leases("busy")
    assert len({x.ip for x in leases}) == 12 and len({x.mac for x in leases}) == 12


def test_port_in_use_on_the_host(nets: NetworkService, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConflictError, match=f"host port {port}/tcp is in use by a process on this host"):
            nets.attach(CID, "c1", tmp_path / "ns", DEFAULT_NETWORK, ports=[PortMapping(port, 80, host_ip="127.0.0.1")])
    with pytest.raises(UsageError, match="given twice"):
        nets.attach(CID, "c1", tmp_path / "ns", DEFAULT_NETWORK, ports=[PortMapping(port, 80), PortMapping(port, 81)])
    assert nets.leases(DEFAULT_NETWORK) == []


# ------------------------------------------------------------------ netavark's records
def test_recorded_status_parses_and_round_trips() -> None:
    raw = json.loads((DATA / "netavark-1.14-setup-status.json").read_text())
    status = NetworkStatus.from_dict(raw)
    iface = status.networks["smoke"].interfaces["eth0"]
    assert iface.mac_address == "22:52:9b:73:db:d0"
    assert iface.subnets[0].ipnet == "10.89.251.2/24" and iface.subnets[0].gateway == "10.89.251.1"
    assert status.addresses("smoke") == ["10.89.251.2"] and status.addresses("other") == []
    assert status.to_dict() == raw
    other = NetworkStatus.from_dict({"b": {"interfaces": {}}})
    assert set(status.merged(other).to_dict()) == {"smoke", "b"}
    bad: object
    for bad in ([], {"n": {"interfaces": {"eth0": {"subnets": [{"gateway": "x"}]}}}}, {"n": "text"}):
        with pytest.raises(AmberError, match="not a network status"):
            NetworkStatus.from_dict(bad)


def test_options_json_has_netavarks_shape() -> None:
    net = netavark.NetworkInfo("n", "f" * 64, "amb00000-0", (netavark.Subnet("10.89.7.0/24", "10.89.7.1"),))
    opts = NetworkOptions(
        CID, "c1", {"n": netavark.PerNetworkOptions(("10.89.7.2",), "eth0", "02:00:00:00:00:01")}, {"n": net}
    )
    d = opts.to_dict()
    assert d["port_mappings"] is None
    assert d["networks"]["n"] == {
        "static_ips": ["10.89.7.2"],
        "aliases": [],
        "interface_name": "eth0",
        "static_mac": "02:00:00:00:00:01",
    }
    assert d["network_info"]["n"]["driver"] == "bridge"
    assert d["network_info"]["n"]["subnets"] == [{"subnet": "10.89.7.0/24", "gateway": "10.89.7.1"}]


def test_netavark_error_message_is_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recorded = (DATA / "netavark-1.14-teardown-error.json").read_text()

    def fake_run(argv: list[str], **kw: Any) -> Any:
        assert argv[1:5] == ["--firewall-driver", "nftables", "--config", str(tmp_path / "cfg")]
        assert kw["timeout"] > 0
        raise CommandError(argv, 1, recorded, "", what=kw["what"])

    monkeypatch.setattr(netavark, "run", fake_run)
    monkeypatch.setattr(netavark, "binary", lambda: "/usr/lib/podman/netavark")
    opts = NetworkOptions(CID, "c1", {}, {})
    with pytest.raises(CommandError) as err:
        netavark.setup(tmp_path / "ns", opts, config_dir=tmp_path / "cfg")
    assert err.value.message == "could not attach container c1 to network "
    assert err.value.details[1].startswith("open container netns: open /tmp/nvtest/ns.bind")


# ------------------------------------------------------------------ the CLI
def test_cli_network_and_volume_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(net_alloc, "host_routes", lambda route_file: [])

    def amber(*argv: str) -> int:
        return cli.main(["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), *argv])

    assert amber("network", "create", "--subnet", "10.89.203.0/24", "n1") == 0
    assert amber("network", "ls", "-q") == 0
    assert capsys.readouterr().out.split() == ["n1", "amber", "n1"]
    assert amber("network", "inspect", "n1") == 0
    [info] = json.loads(capsys.readouterr().out)
    assert info["subnets"] == [{"subnet": "10.89.203.0/24", "gateway": "10.89.203.1"}]
    assert amber("network", "create", "--subnet", "10.89.203.0/25", "n2") == 4
    assert "overlaps network n1" in capsys.readouterr().err
    assert amber("network", "rm", "n1", "nope") == 3
    out = capsys.readouterr()
    assert out.out == "n1\n" and "no such network: nope" in out.err
    assert amber("network") == 2
    assert amber("volume", "create", "v1") == 0
    assert amber("volume", "ls") == 0
    assert "v1" in capsys.readouterr().out
    assert amber("volume", "inspect", "v1") == 0
    assert json.loads(capsys.readouterr().out)[0]["Mountpoint"] == str(tmp_path / "root/volumes/v1/_data")
    assert amber("volume", "rm", "v1") == 0
    assert amber("volume", "rm", "v1") == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _route_line(iface: str, net: str) -> str:
    n = ipaddress.IPv4Network(net)
    hexed = [int.from_bytes(a.packed, "little") for a in (n.network_address, n.netmask)]
    return f"{iface}\t{hexed[0]:08X}\t00000000\t0001\t0\t0\t0\t{hexed[1]:08X}\t0\t0\t0\n"


def test_attach_moves_an_unused_auto_subnet_routed_elsewhere(
    nets: NetworkService, routes: Path, tmp_path: Path
) -> None:
    default = nets.get(DEFAULT_NETWORK)
    mine = nets.create("mine", "10.89.210.0/24")
    with routes.open("a") as f:  # another amber root's bridge came up with the same subnets
        f.write(_route_line("other-br", default.subnet) + _route_line("other-br2", mine.subnet))
        f.write(_route_line(default.bridge, default.subnet))  # our own bridge's route never counts
    status = nets.attach(CID, "c1", tmp_path / "ns", DEFAULT_NETWORK, interface="eth5")
    moved = nets.get(DEFAULT_NETWORK)
    assert moved.subnet == "10.89.101.0/24" and moved.bridge == default.bridge
    assert status.addresses(DEFAULT_NETWORK) == ["10.89.101.2"]
    iface = status.interface(DEFAULT_NETWORK)
    assert iface is not None and iface[0] == "eth5"
    with pytest.raises(ConflictError, match="is routed to another interface of this host"):
        nets.attach(CID, "c1", tmp_path / "ns", "mine")  # the user chose this subnet: never moved
    with routes.open("a") as f:
        f.write(_route_line("other-br3", moved.subnet))
    with pytest.raises(ConflictError, match="is routed to another interface"):
        nets.attach("d" * 64, "c2", tmp_path / "ns2", DEFAULT_NETWORK)  # in use: never moved


# ------------------------------------------------------------------ restoring podman's archives
def test_podman_archive_needs_a_network_of_its_subnet(nets: NetworkService, tmp_path: Path) -> None:
    """podman's counter fixture recorded network podman, 10.88.0.5/16: refused naming both
    without such a network; --ignore-static-ip joins the default network; by subnet or name."""
    from amber.adapters.checkpoint_archive import read_head
    from amber.engine import restore_net
    from amber.engine.restore import RestoreOptions
    from amber.engine.volumes import VolumeService
    from tests.conftest import FIXTURES

    head, volumes = read_head(FIXTURES / "counter-runc.tar"), VolumeService(nets.layout)
    with pytest.raises(NotFoundError) as err:
        restore_net.plan(nets, volumes, head, RestoreOptions())
    assert "needs network podman (subnet 10.88.0.0/16)" in err.value.message
    assert "amber network create --subnet 10.88.0.0/16 podman" in (err.value.hint or "")
    check = restore_net.check_network(head, nets)
    assert check.failed and "network podman (subnet 10.88.0.0/16) is not on this host" in check.reason
    assert restore_net.plan(nets, volumes, head, RestoreOptions(ignore_static_ip=True)).network == DEFAULT_NETWORK
    nets.create("other", "10.88.0.0/16")
    assert restore_net.plan(nets, volumes, head, RestoreOptions()).network == "other"
    assert restore_net.check_network(head, nets).reason == "network other: IP 10.88.0.5 is free"
