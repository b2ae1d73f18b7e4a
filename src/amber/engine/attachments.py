"""A container's attachments: the network it joins (with its IP, MAC and published ports) and
its mounts (named volumes, binds, tmpfs), as the user asked for them at create.

They are kept beside the container's record (`ContainerLayout.attachments`) and carried in a
checkpoint archive: in config.dump (podman's `newNetworks`, `newPortMappings`, `namedVolumes`,
`networkMode`, and amber's own `amberAttachments`) and in `network.status` (netavark's status).
`connect` joins the container's namespace to its network when it starts or is restored,
`disconnect` undoes it when it stops, is removed or checkpointed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from amber.adapters import netlock, state
from amber.adapters.netavark import NetworkStatus, PortMapping
from amber.engine.attachment_records import CONFIG_KEY as CONFIG_KEY  # the record: re-exported here
from amber.engine.attachment_records import NO_NETWORK as NO_NETWORK
from amber.engine.attachment_records import Attachments as Attachments
from amber.engine.attachment_records import RestoreAttachOptions as RestoreAttachOptions
from amber.engine.attachment_records import load as load
from amber.engine.attachment_records import save as save
from amber.engine.networks import DEFAULT_NETWORK, Lease, NetworkService
from amber.errors import AmberError, UsageError


def read_status(path: Path) -> NetworkStatus | None:
    """The network.status at `path`, None when there is none or it does not parse."""
    with contextlib.suppress(OSError, ValueError, AmberError):
        return NetworkStatus.from_dict(json.loads(path.read_text()), source=str(path))
    return None


def recorded_address(status: NetworkStatus | None, network: str) -> tuple[str | None, str | None, str | None]:
    """(IP, MAC, interface) that `status` records for `network` (or for its only network)."""
    if status is None:
        return None, None, None
    name = network if network in status.networks else next(iter(status.networks), None)
    found = status.interface(name) if name is not None else None
    if found is None:
        return None, None, None
    iface, data = found
    ip = data.subnets[0].ip if data.subnets else None
    return ip, data.mac_address or None, iface


def connect(
    networks: NetworkService,
    cid: str,
    name: str,
    netns: Path,
    attachments: Attachments,
    status_file: Path,
    *,
    keep: tuple[bool, bool] | None = None,
) -> NetworkStatus | None:
    """Join namespace `netns` to the container's network and write netavark's status to
    `status_file`. With `keep` (IP, MAC), the address the status file records is asked for again
    (a restore). Returns the status, None without a network.

    Raises what NetworkService.attach raises (the IP or MAC taken, a host port in use...)."""
    if attachments.network is None:
        return None
    ip, mac, iface = attachments.ip, attachments.mac, None
    if keep is not None:
        old_ip, old_mac, iface = recorded_address(read_status(status_file), attachments.network)
        ip = old_ip if keep[0] and old_ip else ip
        mac = old_mac if keep[1] and old_mac else mac
    status = networks.attach(
        cid,
        name,
        netns,
        attachments.network,
        ip=ip,
        mac=mac,
        ports=attachments.ports,
        interface=iface,
        aliases=attachments.aliases,
    )
    state.atomic_write_json(status_file, status.to_dict())
    return status


RESOLV_CONF = "/etc/resolv.conf"


def resolv_conf(networks: NetworkService, attachments: Attachments, path: Path) -> Path | None:
    """Write `path` as the /etc/resolv.conf of a container on a network with DNS: the network's
    gateway, where aardvark-dns answers for its containers' names (and forwards the rest), as
    podman does. Returns `path`, or None (the file removed) when the network has no DNS.

    Raises NotFoundError when the container's network is gone."""
    net = networks.get(attachments.network) if attachments.network is not None else None
    if net is None or not net.dns_enabled:
        path.unlink(missing_ok=True)
        return None
    state.atomic_write_bytes(path, f"search dns.podman\nnameserver {net.gateway}\n".encode(), mode=0o644)
    return path


def resolv_mount(source: Path) -> dict[str, Any]:
    """The OCI bind mount of `source` (from resolv_conf) at /etc/resolv.conf."""
    return {"destination": RESOLV_CONF, "type": "bind", "source": str(source), "options": ["rbind", "rprivate"]}


def without_static(attachments: Attachments, *, ip: bool, mac: bool) -> Attachments:
    """`attachments` with its static IP (`ip`) and MAC (`mac`) dropped: --ignore-static-ip/-mac
    last beyond the restore, as podman's do."""
    return replace(attachments, ip=None if ip else attachments.ip, mac=None if mac else attachments.mac)


def disconnect(networks: NetworkService, cid: str, attachments: Attachments) -> None:
    """Undo `connect` (nothing when the container has no network or no lease).

    Raises CommandError when netavark fails."""
    if attachments.network is not None:
        networks.detach(cid)


def record_connections(attachments: Attachments, status_file: Path, conntrack_file: Path) -> None:
    """Keep the host's conntrack entries of the container's address (checkpoint --tcp-established)."""
    ip = recorded_address(read_status(status_file), attachments.network or "")[0]
    if attachments.network is None or ip is None:
        conntrack_file.unlink(missing_ok=True)
        return
    state.atomic_write_json(conntrack_file, {"entries": [e.to_dict() for e in netlock.entries(ip)]})


def recorded_connections(conntrack_file: Path) -> list[netlock.Entry]:
    """The entries `record_connections` kept (none when there are none or they do not parse)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return [netlock.Entry.from_dict(e) for e in state.read_json(conntrack_file).get("entries") or []]
    return []


def config_fields(
    attachments: Attachments, status: NetworkStatus | None, connections: Sequence[netlock.Entry] = ()
) -> dict[str, Any]:
    """config.dump's network and volume fields, podman's names (with amber's own record)."""
    ip, mac, iface = recorded_address(status, attachments.network or "")
    networks: dict[str, Any] = {}
    if attachments.network is not None:
        opts: dict[str, Any] = {"interface_name": iface or "eth0"}
        if attachments.ip:
            opts["static_ips"] = [attachments.ip]
        if attachments.mac:
            opts["static_mac"] = attachments.mac
        if attachments.aliases:
            opts["aliases"] = list(attachments.aliases)
        networks[attachments.network] = opts
    return {
        "networkMode": "bridge" if attachments.network else "none",
        "createNetNS": True,
        "newNetworks": networks,
        "newPortMappings": [p.to_dict() for p in attachments.ports],
        "namedVolumes": [
            {"Name": v.name, "Dest": v.destination, "Options": ["ro"] if v.read_only else []}
            | ({"IsAnonymous": True} if v.anonymous else {})  # podman's field, left out when false
            for v in attachments.named_volumes()
        ],
        CONFIG_KEY: {
            **attachments.to_dict(),
            "recorded_ip": ip,
            "recorded_mac": mac,
            "conntrack": [e.to_dict() for e in connections],
        },
    }


def from_config(extra: Mapping[str, Any], status: NetworkStatus | None) -> Attachments:
    """The attachments an archive records: amber's own record, else podman's fields.

    Raises ArchiveError-free: malformed podman fields are read as absent."""
    own = extra.get(CONFIG_KEY)
    if isinstance(own, Mapping):
        with contextlib.suppress(KeyError, TypeError, ValueError, UsageError):
            return Attachments.from_dict(own)
    network: str | None = None
    nets = extra.get("newNetworks")
    if isinstance(nets, Mapping) and nets:
        network = str(next(iter(nets)))
    elif status is not None and status.networks:
        network = next(iter(status.networks))
    if extra.get("networkMode") == NO_NETWORK:
        network = None
    ports: list[PortMapping] = []
    for p in extra.get("newPortMappings") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            ports.append(PortMapping.from_dict(p))
    volumes, anonymous = [], []
    for v in extra.get("namedVolumes") or []:
        if isinstance(v, Mapping) and v.get("Name") and v.get("Dest"):
            ro = ":ro" if "ro" in (v.get("Options") or []) else ""
            volumes.append(f"{v['Name']}:{v['Dest']}{ro}")
            if v.get("IsAnonymous") is True:
                anonymous.append(str(v["Name"]))
    return Attachments(network, None, None, tuple(ports), tuple(volumes), anonymous=tuple(anonymous))


__all__ = [
    "CONFIG_KEY",
    "NO_NETWORK",
    "RESOLV_CONF",
    "AttachOptions",
    "RestoreAttachOptions",
    "Attachments",
    "config_fields",
    "connect",
    "disconnect",
    "from_config",
    "from_options",
    "inspect_fields",
    "load",
    "ports_text",
    "read_status",
    "record_connections",
    "recorded_address",
    "recorded_connections",
    "resolv_conf",
    "resolv_mount",
    "save",
    "without_static",
]


def inspect_fields(
    attachments: Attachments, leases: Mapping[str, Lease], spec: Mapping[str, Any] | None
) -> dict[str, Any]:
    """podman's inspect keys: NetworkSettings (Networks.<name>.IPAddress/MacAddress, Ports) and
    Mounts, from the container's attachments, its live leases and its spec."""
    networks = {}
    for name, lease in leases.items():
        networks[name] = {"IPAddress": lease.ip, "MacAddress": lease.mac, "InterfaceName": lease.interface}
    if attachments.network is not None and attachments.network not in networks:
        networks[attachments.network] = {"IPAddress": "", "MacAddress": "", "InterfaceName": ""}
    ports: dict[str, list[dict[str, str]]] = {}
    for p in attachments.ports:
        ports.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip, "HostPort": str(p.host_port)}
        )
    first = next(iter(networks.values()), {})
    mounts = []
    named = {v.destination: v.name for v in attachments.named_volumes()}
    wanted = {m.destination for m in attachments.mount_specs()}
    for m in (spec or {}).get("mounts") or []:
        dest = str(m.get("destination", ""))
        if dest not in wanted:
            continue
        options = [str(o) for o in m.get("options") or []]
        kind = "volume" if dest in named else str(m.get("type", ""))
        mounts.append(
            {
                "Type": kind,
                "Name": named.get(dest, ""),
                "Source": str(m.get("source", "")),
                "Destination": dest,
                "RW": "ro" not in options,
                "Options": options,
            }
        )
    return {
        "NetworkSettings": {
            "IPAddress": first.get("IPAddress", ""),
            "MacAddress": first.get("MacAddress", ""),
            "Ports": ports,
            "Networks": networks,
        },
        "Mounts": mounts,
    }


def ports_text(attachments: Attachments) -> str:
    """`ps`'s PORTS column, as podman prints it: 127.0.0.1:8080->80/tcp, ..."""
    from amber.engine.podman_view import ports_text as text

    return text(attachments.ports)


class AttachOptions(TypedDict, total=False):
    """`run`/`create`'s network and mount keyword options (the CLI's flags)."""

    network: str  # a network name, or "none" (default: amber's default network)
    ip: str | None
    mac_address: str | None
    publish: Sequence[str]  # [IP:]HOST:CTR[/tcp|udp]
    volumes: Sequence[str]  # NAME:/path[:ro] or /host:/path[:ro]
    tmpfs: Sequence[str]  # /path[:options]
    network_aliases: Sequence[str]  # more names the container resolves by on a network with DNS


def from_options(options: AttachOptions) -> Attachments:
    """Attachments.parse of the keyword options. Raises UsageError."""
    return Attachments.parse(
        options.get("network", DEFAULT_NETWORK),
        ip=options.get("ip"),
        mac=options.get("mac_address"),
        publish=list(options.get("publish", ())),
        volumes=list(options.get("volumes", ())),
        tmpfs=list(options.get("tmpfs", ())),
        aliases=list(options.get("network_aliases", ())),
    )
