"""Networks as amber objects: bridge networks stored under the amber root, leases, attach/detach.

A network is a name, an id, a bridge name and an IPv4 subnet with its gateway (`<root>/networks/
<name>.json`). The default network, "amber" (10.89.100.0/24 unless the host routes that), is made
the first time it is needed. A container joins a network with `attach`: amber picks (or checks)
its IP and MAC, records the lease under the run root, then netavark configures the namespace and
the published ports. `detach` undoes it and releases the lease. Every change holds one lock per
amber root, so two commands never hand out the same address, MAC or host port.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from amber.adapters import netavark, state
from amber.adapters.netavark import NetworkStatus, PortMapping
from amber.config import Layout
from amber.engine import naming, net_alloc
from amber.engine.attachment_records import DEFAULT_NETWORK as DEFAULT_NETWORK  # defined with the record
from amber.errors import AmberError, ConflictError, NotFoundError, UsageError

__all__ = ["DEFAULT_NETWORK", "Lease", "Network", "NetworkService", "NetworkStatus", "PortMapping"]

SYS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class Network:
    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str
    created: str
    internal: bool = False
    auto_subnet: bool = False  # amber chose the subnet: it may choose again while nothing is attached
    dns_enabled: bool = False  # containers resolve each other's names (aardvark-dns on the gateway)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Network:
        return cls(
            name=str(d["name"]),
            id=str(d["id"]),
            bridge=str(d["bridge"]),
            subnet=str(d["subnet"]),
            gateway=str(d["gateway"]),
            created=str(d.get("created", "")),
            internal=bool(d.get("internal", False)),
            auto_subnet=bool(d.get("auto_subnet", False)),
            dns_enabled=bool(d.get("dns_enabled", False)),
        )

    def info(self) -> netavark.NetworkInfo:
        return netavark.NetworkInfo(
            self.name,
            self.id,
            self.bridge,
            (netavark.Subnet(self.subnet, self.gateway),),
            self.internal,
            self.dns_enabled,
        )


@dataclass(frozen=True)
class Lease:
    """A container's place on a network: what netavark was told, kept to undo it."""

    container_id: str
    container_name: str
    ip: str
    mac: str
    interface: str
    netns: str
    ports: tuple[PortMapping, ...] = field(default=())
    aliases: tuple[str, ...] = ()  # names besides container_name that aardvark-dns answers for

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ports": [p.to_dict() for p in self.ports]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lease:
        return cls(
            container_id=str(d["container_id"]),
            container_name=str(d.get("container_name", "")),
            ip=str(d["ip"]),
            mac=str(d["mac"]),
            interface=str(d.get("interface") or "eth0"),
            netns=str(d.get("netns", "")),
            ports=tuple(PortMapping.from_dict(p) for p in d.get("ports") or []),
            aliases=tuple(str(a) for a in d.get("aliases") or []),
        )


class Runner(Protocol):
    """What the service needs of netavark (the adapter module; a fake in unit tests)."""

    def setup(
        self, netns_path: Path, options: netavark.NetworkOptions, *, config_dir: Path, timeout: float = ...
    ) -> NetworkStatus: ...

    def teardown(
        self,
        netns_path: Path | None,
        options: netavark.NetworkOptions,
        *,
        config_dir: Path,
        standin_dir: Path,
        timeout: float = ...,
    ) -> None: ...


class NetworkService:
    """amber's networks under one amber root."""

    def __init__(self, layout: Layout, runner: Runner = netavark, route_file: Path = Path("/proc/net/route")) -> None:
        self.layout = layout
        self.runner = runner
        self.route_file = route_file

    @classmethod
    def from_layout(cls, layout: Layout) -> NetworkService:
        return cls(layout)

    # ------------------------------------------------------------ storage
    def _file(self, name: str) -> Path:
        return self.layout.networks_dir / f"{name}.json"

    def _leases_file(self, name: str) -> Path:
        return self.layout.leases_dir / f"{name}.leases.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with state.locked(self.layout.locks, "networks", "amber's networks", wait=True):
            yield

    def _all(self) -> list[Network]:
        d = self.layout.networks_dir
        if not d.is_dir():
            return []
        return sorted((Network.from_dict(state.read_json(p)) for p in d.glob("*.json")), key=lambda n: n.name)

    def leases(self, name: str) -> list[Lease]:
        """The containers attached to network `name`, in order of address."""
        path = self._leases_file(name)
        if not path.exists():
            return []
        leases = [Lease.from_dict(d) for d in state.read_json(path).get("leases", {}).values()]
        return sorted(leases, key=lambda lease: ipaddress.IPv4Address(lease.ip))

    def _last(self, name: str) -> str | None:
        """The address handed out last on network `name` (the next one comes after it)."""
        path = self._leases_file(name)
        last = state.read_json(path).get("last") if path.exists() else None
        return str(last) if last else None

    def _save_leases(self, name: str, leases: Iterable[Lease], last: str | None = None) -> None:
        data: dict[str, Any] = {"leases": {lease.container_id: lease.to_dict() for lease in leases}}
        data["last"] = last or self._last(name)
        if data["leases"] or data["last"]:
            state.atomic_write_json(self._leases_file(name), data)
        else:
            self._leases_file(name).unlink(missing_ok=True)

    # ------------------------------------------------------------ objects
    def create(
        self,
        name: str,
        subnet: str | None = None,
        gateway: str | None = None,
        *,
        internal: bool = False,
        dns: bool = False,
    ) -> Network:
        """Make network `name`. Without `subnet`, a free 10.89.x.0/24 is chosen. With `dns`, its
        containers resolve each other by name through aardvark-dns on the gateway (podman's
        default for `network create`; amber network create turns it on unless --disable-dns).

        Raises UsageError for a bad name, subnet or gateway; ConflictError when the name is
        taken or the subnet overlaps another network or a route of the host."""
        naming.check_name(name)
        with self._locked():
            return self._create(name, subnet, gateway, internal, dns)

    def _create(self, name: str, subnet: str | None, gateway: str | None, internal: bool, dns: bool) -> Network:
        if self._file(name).exists():
            raise ConflictError(f"network {name} already exists", hint="pick another name, or amber network rm it")
        existing = self._all()
        ours = {n.name: ipaddress.IPv4Network(n.subnet) for n in existing}
        routed = net_alloc.host_routes(self.route_file)
        if subnet is None and gateway is not None:
            raise UsageError("--gateway needs --subnet", hint="give the subnet the gateway belongs to")
        if subnet is None:
            net = net_alloc.pick_subnet(ours, routed)
            if name == DEFAULT_NETWORK:
                default = ipaddress.IPv4Network(net_alloc.DEFAULT_SUBNET)
                if not any(default.overlaps(t) for t in [*ours.values(), *routed]):
                    net = default
            gw = net.network_address + 1
        else:
            net, gw = net_alloc.parse_subnet(subnet, gateway)
            net_alloc.check_subnet_free(net, ours, routed)
        network = Network(
            name=name,
            id=secrets.token_hex(32),
            bridge=self._bridge_name({n.bridge for n in existing}),
            subnet=str(net),
            gateway=str(gw),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            internal=internal,
            auto_subnet=subnet is None,
            dns_enabled=dns,
        )
        state.atomic_write_json(self._file(name), network.to_dict())
        return network

    def _bridge_name(self, ours: set[str]) -> str:
        """`amb<5 hex of the root>-<n>`: unique per amber root, never an interface the host has."""
        tag = hashlib.sha256(os.path.abspath(self.layout.root).encode()).hexdigest()[:5]
        n = 0
        while f"amb{tag}-{n}" in ours or (SYS_NET / f"amb{tag}-{n}").exists():
            n += 1
        return f"amb{tag}-{n}"

    def get(self, name: str) -> Network:
        """Network `name` (the default one is made on first use). Raises NotFoundError."""
        path = self._file(name)
        if not path.exists() and name == DEFAULT_NETWORK:
            with self._locked():
                if not path.exists():
                    return self._create(name, None, None, False, False)
        return self._load(name)

    def _load(self, name: str) -> Network:
        try:
            return Network.from_dict(state.read_json(self._file(name)))
        except FileNotFoundError:
            raise NotFoundError(f"no such network: {name}", hint="amber network ls lists them") from None

    def list(self) -> list[Network]:
        """Every network, the default one included, by name."""
        self.get(DEFAULT_NETWORK)
        return self._all()

    def inspect(self, name: str) -> dict[str, Any]:
        """A network and its leases, as a JSON-ready dict (podman's key names where they exist)."""
        network = self.get(name)
        return {
            "name": network.name,
            "id": network.id,
            "driver": "bridge",
            "network_interface": network.bridge,
            "created": network.created,
            "subnets": [{"subnet": network.subnet, "gateway": network.gateway}],
            "ipv6_enabled": False,
            "internal": network.internal,
            "dns_enabled": network.dns_enabled,
            "containers": {
                lease.container_id: {
                    "name": lease.container_name,
                    "interface": lease.interface,
                    "ip": lease.ip,
                    "mac": lease.mac,
                    "ports": [str(p) for p in lease.ports],
                }
                for lease in self.leases(name)
            },
        }

    def remove(self, name: str, *, is_live: Callable[[str], bool] | None = None) -> Network:
        """Remove network `name`. Refused while containers are attached; leases of containers
        that `is_live` says are gone are torn down first.

        Raises NotFoundError, ConflictError (in use, or the default network)."""
        if name == DEFAULT_NETWORK:
            raise ConflictError(
                f"network {name} is amber's default network and cannot be removed", hint="remove the networks you made"
            )
        network = self.get(name)
        with self._locked():
            self._load(name)
            leases = self.leases(name)
            if is_live is not None:
                for lease in [x for x in leases if not is_live(x.container_id)]:
                    self._teardown(network, lease)
                    leases.remove(lease)
                    self._save_leases(name, leases)
            if leases:
                users = ", ".join(lease.container_name or lease.container_id[:12] for lease in leases)
                raise ConflictError(
                    f"network {name} is in use by container(s) {users}",
                    hint="remove those containers (amber rm) first",
                )
            self._file(name).unlink()
            self._leases_file(name).unlink(missing_ok=True)
        return network

    # ------------------------------------------------------------ attach / detach
    def attach(
        self,
        container_id: str,
        name: str,
        netns_path: Path,
        network: str = DEFAULT_NETWORK,
        ip: str | None = None,
        mac: str | None = None,
        ports: Sequence[PortMapping] = (),
        interface: str | None = None,
        aliases: Sequence[str] = (),
    ) -> NetworkStatus:
        """Join the container's namespace to `network`, publishing `ports` on the host. The
        interface is `interface` (a restore passes the archived one), else the next free ethN.
        On a network with DNS, the container resolves by `name` and its `aliases`.

        Returns netavark's status for that network. Raises NotFoundError (network), UsageError
        (an IP outside the subnet, a bad MAC or host IP), ConflictError (already attached, IP,
        MAC or host port taken, the subnet routed elsewhere on the host), CommandError (netavark
        failed; nothing is left behind)."""
        self.get(network)
        with self._locked():
            leases = self.leases(network)
            if any(lease.container_id == container_id for lease in leases):
                raise ConflictError(
                    f"container {name} is already attached to network {network}", hint="detach it first"
                )
            # A container that asks for its address back (a restore) pins the subnet as a lease does.
            net = self._routable(self._load(network), bool(leases) or ip is not None)
            subnet, gateway = net_alloc.parse_subnet(net.subnet, net.gateway)
            lease = Lease(
                container_id=container_id,
                container_name=name,
                ip=net_alloc.allocate_ip(
                    subnet, gateway, {x.ip: x.container_name for x in leases}, ip, network, self._last(network)
                ),
                mac=net_alloc.allocate_mac({x.mac: x.container_name for x in leases}, mac, network),
                interface=self._interface(container_id, interface),
                netns=str(netns_path),
                ports=tuple(ports),
                aliases=tuple(aliases),
            )
            self._check_ports(lease.ports)
            self._save_leases(network, [*leases, lease], lease.ip)
            try:
                return self.runner.setup(netns_path, self._options(net, lease), config_dir=self._config())
            except BaseException:
                with contextlib.suppress(AmberError):  # whatever netavark made before it failed
                    self._teardown(net, lease)
                self._save_leases(network, leases)
                raise

    def detach(self, container_id: str, network: str | None = None) -> None:
        """Undo `attach` for one network (or every network the container is on) and release
        the lease. Detaching from a network the container is not on does nothing.

        Raises CommandError when netavark fails (the lease is kept, so detach can be retried)."""
        with self._locked():
            for net in self._all():
                if network is not None and net.name != network:
                    continue
                leases = self.leases(net.name)
                for lease in [x for x in leases if x.container_id == container_id]:
                    self._teardown(net, lease)
                    leases.remove(lease)
                    self._save_leases(net.name, leases)

    def attachments(self, container_id: str) -> dict[str, Lease]:
        """network name -> the container's lease on it."""
        found = {}
        for net in self._all():
            for lease in self.leases(net.name):
                if lease.container_id == container_id:
                    found[net.name] = lease
        return found

    # ------------------------------------------------------------ helpers
    def _routable(self, net: Network, in_use: bool) -> Network:
        """`net`, unless another interface of the host (another amber root's bridge, podman's)
        routes its subnet now: then an unused network whose subnet amber chose gets a free one;
        otherwise ConflictError."""
        routed = net_alloc.host_routes(self.route_file, except_iface=net.bridge)
        subnet = ipaddress.IPv4Network(net.subnet)
        clash = next((r for r in routed if subnet.overlaps(r)), None)
        if clash is None:
            return net
        if in_use or not net.auto_subnet:
            raise ConflictError(
                f"subnet {net.subnet} of network {net.name} is routed to another interface of this host ({clash})",
                hint="detach what uses that subnet, or make a network with another --subnet",
            )
        ours = {n.name: ipaddress.IPv4Network(n.subnet) for n in self._all() if n.name != net.name}
        fresh = net_alloc.pick_subnet(ours, routed)
        moved = Network(**{**net.to_dict(), "subnet": str(fresh), "gateway": str(fresh.network_address + 1)})
        state.atomic_write_json(self._file(net.name), moved.to_dict())
        return moved

    def _config(self) -> Path:
        return self.layout.netavark_config

    def _options(self, net: Network, lease: Lease) -> netavark.NetworkOptions:
        return netavark.NetworkOptions(
            container_id=lease.container_id,
            container_name=lease.container_name or lease.container_id[:12],
            networks={net.name: netavark.PerNetworkOptions((lease.ip,), lease.interface, lease.mac, lease.aliases)},
            network_info={net.name: net.info()},
            port_mappings=lease.ports,
        )

    def _teardown(self, net: Network, lease: Lease) -> None:
        netns_path = Path(lease.netns) if lease.netns else None
        self.runner.teardown(
            netns_path, self._options(net, lease), config_dir=self._config(), standin_dir=self.layout.netns
        )

    def _interface(self, container_id: str, want: str | None) -> str:
        """`want`, or the next ethN the container has no interface by. Raises UsageError when
        `want` is taken or not an interface name."""
        used = {lease.interface for lease in self.attachments(container_id).values()}
        if want is not None:
            if want in used or not re.fullmatch(r"[a-zA-Z0-9_.-]{1,15}", want):
                raise UsageError(
                    f"interface name {want!r} is taken or invalid for this container",
                    hint="give another name (up to 15 letters, digits, '_', '.', '-'), or none",
                )
            return want
        n = 0
        while f"eth{n}" in used:
            n += 1
        return f"eth{n}"

    def _check_ports(self, ports: Sequence[PortMapping]) -> None:
        """Raises ConflictError when a host port is published already (here or by a process on
        the host), UsageError when the host IP is not one of this host's."""
        published = [(p, lease) for net in self._all() for lease in self.leases(net.name) for p in lease.ports]
        for i, port in enumerate(ports):
            for other in ports[:i]:
                if _clash(port, other):
                    raise UsageError(f"port mapping {port} is given twice", hint="publish each host port once")
            for other, lease in published:
                if _clash(port, other):
                    raise ConflictError(
                        f"host port {port.host_port}/{port.protocol} is already published by container "
                        f"{lease.container_name or lease.container_id[:12]} ({other})",
                        hint="publish another host port",
                    )
            _probe(port)


def _clash(a: PortMapping, b: PortMapping) -> bool:
    if a.protocol != b.protocol or a.host_port != b.host_port:
        return False
    return not a.host_ip or not b.host_ip or a.host_ip == b.host_ip


def _probe(port: PortMapping) -> None:
    """Bind the host port for a moment: a listener on it means the port is not free."""
    if port.protocol == "sctp":
        return
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((port.host_ip or "0.0.0.0", port.host_port))  # noqa: S104 - a probe, closed at once
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConflictError(
                    f"host port {port.host_port}/{port.protocol} is in use by a process on this host",
                    hint="publish another host port, or stop what listens there",
                ) from exc
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError(
                    f"port mapping {port}: {port.host_ip} is not an address of this host",
                    hint="give one of the host's addresses, or leave the IP out",
                ) from exc
            raise AmberError(f"could not check host port {port}: {exc.strerror}") from exc
