"""netavark, podman's network tool: bridges, veth pairs, static addresses, published ports, NAT.

`setup(netns, options)` gives a network namespace an interface on a bridge network and returns
netavark's status block (what podman keeps as `network.status` in a checkpoint archive);
`teardown(netns, options)` undoes it. Both run netavark with the nftables firewall driver and a
config directory of the caller's (one per amber root), so separate amber roots stay apart.

netavark allocates nothing: the caller passes the container's static IP and MAC (as podman does).
Its input and output are modelled by the records below; foreign output is parsed leniently and
kept raw, so it goes back into an archive exactly as netavark wrote it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.adapters import mounts, netns
from amber.adapters.run import find_tool, run
from amber.errors import AmberError, CommandError, PreconditionError, UsageError

CANDIDATES = ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark", "/usr/local/libexec/podman/netavark")
AARDVARK_CANDIDATES = (
    "/usr/lib/podman/aardvark-dns",
    "/usr/libexec/podman/aardvark-dns",
    "/usr/local/libexec/podman/aardvark-dns",
)
TIMEOUT = 60.0
PROTOCOLS = ("tcp", "udp", "sctp")


def binary() -> str:
    """netavark's path ($AMBER_NETAVARK, podman's helper directories, then PATH).

    Raises PreconditionError when it is not installed."""
    override = os.environ.get("AMBER_NETAVARK")
    for path in (override, *CANDIDATES):
        if path and os.access(path, os.X_OK):
            return path
    try:
        return find_tool("netavark", "give containers a network")
    except PreconditionError as exc:
        raise PreconditionError(
            "could not find netavark, which amber needs to give containers a network",
            hint="run the host setup (scripts/setup-host.sh): it installs netavark 1.14 from Debian 13",
        ) from exc


def aardvark_binary() -> str | None:
    """aardvark-dns's path ($AMBER_AARDVARK_DNS, podman's helper directories), None when absent.

    netavark starts, updates and stops it itself for networks with DNS on."""
    override = os.environ.get("AMBER_AARDVARK_DNS")
    return next((p for p in (override, *AARDVARK_CANDIDATES) if p and os.access(p, os.X_OK)), None)


# ------------------------------------------------------------------ netavark's input
@dataclass(frozen=True)
class PortMapping:
    """A published port: host_ip:host_port -> container_port (range ports in a row)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    range: int = 1

    @classmethod
    def from_string(cls, text: str) -> PortMapping:
        """Parse `[IP:]HOST:CTR[/tcp|udp|sctp]` (an IPv6 host IP in brackets: `[::1]:80:80`).

        Raises UsageError naming the bad part."""
        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        if proto not in PROTOCOLS:
            raise UsageError(f"port mapping {text!r}: unknown protocol {proto!r}", hint="use tcp, udp or sctp")
        host_ip = ""
        if spec.startswith("["):
            host_ip, sep, spec = spec[1:].partition("]:")
            if not sep:
                raise UsageError(f"port mapping {text!r}: unclosed [", hint="write [IPv6]:HOST:CTR")
        parts = spec.split(":")
        if host_ip and len(parts) != 2:
            raise UsageError(f"port mapping {text!r}: expected [IPv6]:HOST:CTR", hint="e.g. [::1]:8080:80")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        if len(parts) != 2:
            raise UsageError(
                f"port mapping {text!r}: expected [IP:]HOST:CTR[/PROTO]",
                hint="e.g. -p 8080:80 or 127.0.0.1:8080:80/tcp",
            )
        if host_ip:
            _check_ip(host_ip, text)
        return cls(_port(parts[0], text, "host"), _port(parts[1], text, "container"), proto, host_ip)

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip + ':' if ip else ''}{self.host_port}:{self.container_port}/{self.protocol}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_ip": self.host_ip,
            "container_port": self.container_port,
            "host_port": self.host_port,
            "range": self.range,
            "protocol": self.protocol,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PortMapping:
        return cls(
            host_port=int(d["host_port"]),
            container_port=int(d["container_port"]),
            protocol=str(d.get("protocol") or "tcp"),
            host_ip=str(d.get("host_ip") or ""),
            range=int(d.get("range") or 1),
        )


def _port(text: str, spec: str, which: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"port mapping {spec!r}: bad {which} port {text!r}", hint="ports are numbers from 1 to 65535")
    return int(text)


def _check_ip(text: str, spec: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError as exc:
        raise UsageError(
            f"port mapping {spec!r}: bad host IP {text!r}", hint="give an IP address, or leave it out"
        ) from exc


@dataclass(frozen=True)
class Subnet:
    subnet: str  # CIDR, e.g. 10.89.100.0/24
    gateway: str

    def to_dict(self) -> dict[str, str]:
        return {"subnet": self.subnet, "gateway": self.gateway}


@dataclass(frozen=True)
class NetworkInfo:
    """One network as netavark sees it (podman's `types.Network`)."""

    name: str
    id: str
    bridge: str  # netavark's `network_interface`
    subnets: tuple[Subnet, ...]
    internal: bool = False
    dns_enabled: bool = False  # netavark registers the container's name with aardvark-dns

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "driver": "bridge",
            "network_interface": self.bridge,
            "subnets": [s.to_dict() for s in self.subnets],
            "ipv6_enabled": False,
            "internal": self.internal,
            "dns_enabled": self.dns_enabled,
            "ipam_options": {"driver": "host-local"},
        }


@dataclass(frozen=True)
class PerNetworkOptions:
    static_ips: tuple[str, ...]
    interface_name: str = "eth0"
    static_mac: str = ""
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "static_ips": list(self.static_ips),
            "aliases": list(self.aliases),
            "interface_name": self.interface_name,
        }
        if self.static_mac:
            d["static_mac"] = self.static_mac
        return d


@dataclass(frozen=True)
class NetworkOptions:
    """netavark's stdin: the container, the networks it joins (with options) and its ports."""

    container_id: str
    container_name: str
    networks: Mapping[str, PerNetworkOptions]
    network_info: Mapping[str, NetworkInfo]
    port_mappings: Sequence[PortMapping] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "container_name": self.container_name,
            "port_mappings": [p.to_dict() for p in self.port_mappings] or None,
            "networks": {k: v.to_dict() for k, v in self.networks.items()},
            "network_info": {k: v.to_dict() for k, v in self.network_info.items()},
        }


# ------------------------------------------------------------------ netavark's output
@dataclass(frozen=True)
class NetAddress:
    ipnet: str  # address with prefix, e.g. 10.89.100.2/24
    gateway: str = ""

    @property
    def ip(self) -> str:
        return self.ipnet.partition("/")[0]


@dataclass(frozen=True)
class NetInterface:
    mac_address: str
    subnets: tuple[NetAddress, ...] = ()


@dataclass(frozen=True)
class StatusBlock:
    """What netavark reports for one network (podman's `types.StatusBlock`)."""

    interfaces: Mapping[str, NetInterface]
    dns_server_ips: tuple[str, ...] = ()
    dns_search_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkStatus:
    """podman's `network.status`: network name -> StatusBlock, with the JSON it came from."""

    networks: Mapping[str, StatusBlock]
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "netavark's output") -> NetworkStatus:
        """Parse a status map leniently (unknown keys ignored).

        Raises AmberError when it is not the shape netavark writes."""
        if not isinstance(raw, dict):
            raise AmberError(f"{source} is not a network status (a JSON object)", hint="report this with --debug")
        try:
            networks = {str(name): _block(block) for name, block in raw.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise AmberError(f"{source} is not a network status: {exc}", hint="report this with --debug") from exc
        return cls(networks, raw)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    def merged(self, other: NetworkStatus) -> NetworkStatus:
        """Both statuses in one (the whole container's network.status)."""
        return NetworkStatus({**self.networks, **other.networks}, {**self.raw, **other.raw})

    def interface(self, network: str) -> tuple[str, NetInterface] | None:
        """The first interface on `network` (what podman restores the IP and MAC from)."""
        block = self.networks.get(network)
        if block is None or not block.interfaces:
            return None
        return next(iter(block.interfaces.items()))

    def addresses(self, network: str) -> list[str]:
        block = self.networks.get(network)
        if block is None:
            return []
        return [a.ip for iface in block.interfaces.values() for a in iface.subnets]


def _block(d: Mapping[str, Any]) -> StatusBlock:
    interfaces = {
        str(name): NetInterface(
            mac_address=str(iface.get("mac_address") or ""),
            subnets=tuple(NetAddress(str(s["ipnet"]), str(s.get("gateway") or "")) for s in iface.get("subnets") or []),
        )
        for name, iface in (d.get("interfaces") or {}).items()
    }
    return StatusBlock(
        interfaces,
        tuple(str(x) for x in d.get("dns_server_ips") or []),
        tuple(str(x) for x in d.get("dns_search_domains") or []),
    )


# ------------------------------------------------------------------ running it
def _argv(config_dir: Path, verb: str, netns_path: Path) -> list[str]:
    """netavark's command line; aardvark-dns's state lives under `config_dir`/aardvark-dns."""
    aardvark = aardvark_binary()
    extra = ["--aardvark-binary", aardvark] if aardvark else []
    return [binary(), "--firewall-driver", "nftables", "--config", str(config_dir), *extra, verb, str(netns_path)]


def _error(exc: CommandError) -> list[str]:
    """netavark reports errors as one JSON object on stdout: its message, or the raw text."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return [str(json.loads(exc.stdout)["error"])]
    return []


def setup(netns_path: Path, options: NetworkOptions, *, config_dir: Path, timeout: float = TIMEOUT) -> NetworkStatus:
    """Attach the namespace at `netns_path` to the networks in `options`.

    Raises CommandError (with netavark's message) when netavark refuses or fails."""
    names = ", ".join(options.networks)
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        res = run(
            _argv(config_dir, "setup", netns_path),
            input=json.dumps(options.to_dict()).encode(),
            timeout=timeout,
            what=f"could not attach container {options.container_name} to network {names}",
            hint="see netavark's message above; amber network inspect shows the network's leases",
        )
    except CommandError as exc:
        exc.details[1:1] = _error(exc)
        raise
    try:
        raw = json.loads(res.stdout)
    except ValueError as exc:
        raise AmberError(
            f"netavark printed no status for container {options.container_name}: {res.stdout[:200]!r}",
            hint="report this with --debug",
        ) from exc
    return NetworkStatus.from_dict(raw)


def teardown(
    netns_path: Path | None,
    options: NetworkOptions,
    *,
    config_dir: Path,
    standin_dir: Path,
    timeout: float = TIMEOUT,
) -> None:
    """Undo `setup`: the container's interfaces, its port forwarding, and the bridge if unused.

    When the namespace is gone (the container was removed first), netavark cannot tear down, so
    a stand-in namespace holding an interface of each name takes its place for the call.
    Raises CommandError when netavark fails."""
    names = ", ".join(options.networks)
    what = f"could not detach container {options.container_name} from network {names}"
    if netns_path is not None and _is_netns(netns_path):
        _teardown(netns_path, options, config_dir, timeout, what)
        return
    standin = standin_dir / f"standin-{options.container_id[:32]}"
    netns.create(standin)
    try:
        ip = find_tool("ip", "configure network namespaces")
        nsenter = find_tool("nsenter", "enter network namespaces")
        for n, opts in enumerate(options.networks.values()):
            run(
                [nsenter, f"--net={standin}", ip, "link", "add", opts.interface_name, "type", "veth"]
                + ["peer", "name", f"amber-ph{n}"],
                timeout=timeout,
                what=f"could not prepare a stand-in namespace to detach container {options.container_name}",
            )
        _teardown(standin, options, config_dir, timeout, what)
    finally:
        netns.remove(standin)


def _is_netns(path: Path) -> bool:
    """A live namespace: a pinned (bind-mounted) namespace file, or a process's /proc entry."""
    if str(path).startswith("/proc/"):
        return path.exists()
    return mounts.is_mountpoint(path)


def _teardown(netns_path: Path, options: NetworkOptions, config_dir: Path, timeout: float, what: str) -> None:
    try:
        run(
            _argv(config_dir, "teardown", netns_path),
            input=json.dumps(options.to_dict()).encode(),
            timeout=timeout,
            what=what,
            hint="see netavark's message above, then run the command again",
        )
    except CommandError as exc:
        exc.details[1:1] = _error(exc)
        raise
