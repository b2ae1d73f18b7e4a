"""Attachments (networks, ports, mounts of a container), their config.dump fields, the conntrack
entries kept for --tcp-established, and addresses going round a subnet."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from amber.adapters import netlock
from amber.adapters.netavark import NetworkStatus, PortMapping
from amber.engine import attachments as attach
from amber.engine import net_alloc
from amber.engine.attachments import Attachments
from amber.errors import UsageError

STATUS = NetworkStatus.from_dict(
    {
        "web": {
            "interfaces": {
                "eth0": {
                    "subnets": [{"ipnet": "10.89.7.5/24", "gateway": "10.89.7.1"}],
                    "mac_address": "02:aa:bb:cc:dd:ee",
                }
            }
        }
    }
)


def test_parse_options() -> None:
    att = Attachments.parse("web", ip="10.89.7.9", mac="02:AA:BB:CC:DD:EE", publish=["127.0.0.1:8080:80/udp"])
    assert att.network == "web" and att.mac == "02:aa:bb:cc:dd:ee"
    assert att.ports == (PortMapping(8080, 80, "udp", "127.0.0.1"),)
    assert Attachments.parse("none").network is None
    with pytest.raises(UsageError, match="need a network"):
        Attachments.parse("none", publish=["80:80"])
    with pytest.raises(UsageError):
        Attachments.parse("web", ip="10.89.7")
    with pytest.raises(UsageError, match="two mounts at /data"):
        Attachments.parse("web", volumes=["a:/data"], tmpfs=["/data"])


def test_record_round_trip(tmp_path: Path) -> None:
    att = Attachments.parse("web", publish=["8080:80"], volumes=["db:/data:ro", "/srv:/srv"], tmpfs=["/run"])
    attach.save(tmp_path / "a.json", att)
    assert attach.load(tmp_path / "a.json") == att
    assert attach.load(tmp_path / "missing.json") == Attachments()
    assert [v.name for v in att.named_volumes()] == ["db"]
    assert [str(b.source) for b in att.binds()] == ["/srv"]


def test_config_fields_are_podmans_and_come_back() -> None:
    att = Attachments.parse("web", ip="10.89.7.5", publish=["8080:80"], volumes=["db:/data:ro"])
    entry = netlock.Entry("10.89.7.250", "10.89.7.1", 40000, 8080, "10.89.7.5", "10.89.7.1", 80, 40000)
    fields = attach.config_fields(att, STATUS, [entry])
    assert fields["networkMode"] == "bridge"
    assert fields["newNetworks"] == {"web": {"interface_name": "eth0", "static_ips": ["10.89.7.5"]}}
    assert fields["newPortMappings"] == [PortMapping(8080, 80).to_dict()]
    assert fields["namedVolumes"] == [{"Name": "db", "Dest": "/data", "Options": ["ro"]}]
    assert attach.from_config(fields, STATUS) == att
    assert fields[attach.CONFIG_KEY]["conntrack"] == [entry.to_dict()]
    assert attach.config_fields(Attachments(), None)["networkMode"] == "none"


def test_podmans_config_is_read() -> None:
    extra = {
        "newNetworks": {"podman": {"interface_name": "eth0"}},
        "newPortMappings": [{"host_port": 8080, "container_port": 80, "protocol": "tcp"}, {"bad": 1}],
        "namedVolumes": [{"Name": "v", "Dest": "/v", "Options": []}, {"Name": "x"}],
    }
    att = attach.from_config(extra, None)
    assert att.network == "podman" and att.ports == (PortMapping(8080, 80),) and att.volumes == ("v:/v",)
    assert attach.from_config({"networkMode": "none", **extra}, None).network is None
    assert attach.recorded_address(STATUS, "other") == ("10.89.7.5", "02:aa:bb:cc:dd:ee", "eth0")
    assert attach.recorded_address(None, "web") == (None, None, None)


def test_without_static() -> None:
    att = Attachments.parse("web", ip="10.89.7.9", mac="02:00:00:00:00:09")
    assert attach.without_static(att, ip=True, mac=False) == Attachments("web", None, "02:00:00:00:00:09")


def test_inspect_fields() -> None:
    from amber.engine.networks import Lease

    att = Attachments.parse("web", publish=["127.0.0.1:8080:80"], volumes=["db:/data"])
    lease = Lease("c" * 64, "w", "10.89.7.5", "02:aa:bb:cc:dd:ee", "eth0", "/ns")
    spec = {
        "mounts": [
            {"destination": "/proc", "type": "proc"},
            {"destination": "/data", "type": "bind", "source": "/v", "options": ["rbind", "rw"]},
        ]
    }
    out = attach.inspect_fields(att, {"web": lease}, spec)
    assert out["NetworkSettings"]["Networks"]["web"]["IPAddress"] == "10.89.7.5"
    assert out["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert out["Mounts"] == [
        {"Type": "volume", "Name": "db", "Source": "/v", "Destination": "/data", "RW": True, "Options": ["rbind", "rw"]}
    ]
    assert attach.ports_text(att) == "127.0.0.1:8080->80/tcp"


def test_conntrack_lines_and_their_nat_binding() -> None:
    text = (
        "tcp      6 431999 ESTABLISHED src=10.89.7.250 dst=10.89.7.1 sport=42420 dport=18777 "
        "src=10.89.7.5 dst=10.89.7.1 sport=7000 dport=42420 [ASSURED] mark=0 use=1\n"
        "tcp      6 25 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1\n"
        "udp      17 29 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1\n"
    )
    (entry,) = netlock.parse(text)
    assert entry == netlock.Entry("10.89.7.250", "10.89.7.1", 42420, 18777, "10.89.7.5", "10.89.7.1", 7000, 42420)
    args = entry.insert_args()
    assert args[args.index("--dst-nat") + 1] == "10.89.7.5:7000"
    assert "--src-nat" in args  # masqueraded: the reply goes to the gateway
    plain = netlock.Entry("a", "b", 1, 2, "b", "a", 2, 1)
    assert "--dst-nat" not in plain.insert_args() and "--src-nat" not in plain.insert_args()
    assert entry.involves(["10.89.7.5"]) and not entry.involves(["192.0.2.9"])
    assert netlock.Entry.from_dict(entry.to_dict()) == entry


def test_addresses_go_round_the_subnet() -> None:
    net, gw = ipaddress.IPv4Network("10.89.7.0/29"), ipaddress.IPv4Address("10.89.7.1")
    assert net_alloc.allocate_ip(net, gw, {}, None, "n") == "10.89.7.2"
    assert net_alloc.allocate_ip(net, gw, {}, None, "n", after="10.89.7.2") == "10.89.7.3"
    assert net_alloc.allocate_ip(net, gw, {"10.89.7.2": "x"}, None, "n", after="10.89.7.6") == "10.89.7.3"
    assert net_alloc.allocate_ip(net, gw, {}, None, "n", after="192.0.2.1") == "10.89.7.2"


@pytest.mark.parametrize(("body", "expected"), [(b"null", None), (b'{"web": {}}', {"web": {}}), (b"{bad", None)])
def test_read_head_takes_network_status_leniently(tmp_path: Path, body: bytes, expected: object) -> None:
    import io
    import tarfile

    from amber.adapters.checkpoint_archive import read_head

    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("config.dump", b'{"name": "c"}'), ("spec.dump", b"{}"), ("network.status", body)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert read_head(path).network_status == expected


def test_anonymous_volume_is_named_at_create_and_kept_through_the_archive(tmp_path: Path) -> None:
    from amber.config import Layout
    from amber.engine import mount_specs
    from amber.engine.volumes import VolumeService

    att = Attachments.parse("none", volumes=["/data", "db:/db"])
    (name,) = att.anonymous
    assert len(name) == 64 and att.volumes == (f"{name}:/data", "db:/db")
    assert [(v.name, v.anonymous) for v in att.named_volumes()] == [(name, True), ("db", False)]
    assert Attachments.from_dict(att.to_dict()) == att
    fields = attach.config_fields(att, None)
    assert [v.get("IsAnonymous") for v in fields["namedVolumes"]] == [True, None]
    assert attach.from_config(fields, None) == att
    podmans = {k: v for k, v in fields.items() if k != attach.CONFIG_KEY}
    assert attach.from_config(podmans, None).anonymous == (name,)
    assert Attachments.parse("none", volumes=["/data"]).anonymous != att.anonymous  # a new name each time
    volumes = VolumeService(Layout(tmp_path / "root", tmp_path / "run"))
    mount_specs.oci_mounts(att.mount_specs(), volumes, container_id="c" * 64)
    assert volumes.get(name).anonymous and not volumes.get("db").anonymous
    assert volumes.get(name).inspect()["Anonymous"] is True
    with pytest.raises(UsageError, match="expected SOURCE:DEST"):
        Attachments.parse("none", volumes=["data"])
