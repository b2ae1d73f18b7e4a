"""The network and volume side of a restore from an archive: which network the container joins
(the recorded one, or one of this host with the recorded subnet), whether its recorded IP can be
had, which named volumes come back from the archive, which binds it needs.

Everything here that can refuse runs before any work (`plan`); `import_volumes` runs after the
archive is unpacked.
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters import checkpoint_archive as archive
from amber.adapters import state
from amber.adapters.netavark import NetworkStatus, PortMapping
from amber.engine import attachments as attach
from amber.engine.archive_models import CheckResult, CheckStatus
from amber.engine.attachments import Attachments
from amber.engine.networks import DEFAULT_NETWORK, Network, NetworkService
from amber.engine.volumes import VolumeService, archive_member
from amber.errors import AmberError, ArchiveError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from amber.engine.restore import RestoreOptions


def archive_status(head: archive.ArchiveHead) -> NetworkStatus | None:
    """The archive's network.status, None when it has none. Raises ArchiveError when malformed."""
    if head.network_status is None:
        return None
    try:
        return NetworkStatus.from_dict(head.network_status, source=f"network.status of {head.path}")
    except AmberError as exc:
        raise ArchiveError(exc.message, hint="the archive is damaged; make it again") from exc


def recorded_subnet(status: NetworkStatus | None, network: str) -> ipaddress.IPv4Network | None:
    """The subnet of the address `status` records for `network` (or for its only network)."""
    if status is None:
        return None
    name = network if network in status.networks else next(iter(status.networks), None)
    block = status.networks.get(name or "")
    for iface in block.interfaces.values() if block else ():
        for address in iface.subnets:
            try:
                return ipaddress.IPv4Network(address.ipnet, strict=False)
            except ValueError:
                continue
    return None


def find_network(networks: NetworkService, name: str, subnet: ipaddress.IPv4Network | None) -> Network | None:
    """Network `name` here, else one with `subnet`; None when neither exists."""
    if name == DEFAULT_NETWORK:
        return networks.get(name)
    by_name = {n.name: n for n in networks.list()}
    if name in by_name:
        return by_name[name]
    if subnet is not None:
        for net in by_name.values():
            if ipaddress.IPv4Network(net.subnet) == subnet:
                return net
    return None


def missing_network_hint(network: str, subnet: ipaddress.IPv4Network | None) -> str:
    """What to do when the network an archive needs is not here."""
    return (
        f"make it: amber network create --subnet {subnet or 'SUBNET'} {network}, or restore with "
        "--ignore-static-ip to join amber's default network with a new address"
    )


def plan(
    networks: NetworkService, volumes: VolumeService, head: archive.ArchiveHead, opts: RestoreOptions
) -> Attachments:
    """What the restored container attaches to. Runs before any work.

    Raises NotFoundError (no network of the recorded name or subnet here, unless
    --ignore-static-ip, which joins amber's default network instead; a bind's source is
    missing), ConflictError (the recorded IP is taken; a named volume exists already, without
    --ignore-volumes), UsageError (a bad --publish)."""
    status = archive_status(head)
    att = attach.from_config(head.config_dump.extra, status)
    att = attach.without_static(att, ip=opts.ignore_static_ip, mac=opts.ignore_static_mac)
    if opts.publish is not None:
        att = replace(att, ports=tuple(PortMapping.from_string(p) for p in opts.publish))
    if att.network is not None:
        subnet = recorded_subnet(status, att.network)
        net = find_network(networks, att.network, subnet)
        if net is None and opts.ignore_static_ip:
            net = networks.get(DEFAULT_NETWORK)  # a new address: amber's default network will do
        if net is None:
            raise NotFoundError(
                f"checkpoint archive {head.path} needs network {att.network} (subnet {subnet or 'unknown'}), "
                "which is not on this host",
                hint=missing_network_hint(att.network, subnet),
            )
        att = replace(att, network=net.name)
        ip = attach.recorded_address(status, net.name)[0]
        if ip and opts.keep_address[0]:
            leases = networks.leases(net.name)
            holder = next((x for x in leases if x.ip == ip and x.container_id != opts.prepared), None)
            if holder is not None:
                raise ConflictError(
                    f"IP {ip} of network {net.name} is already taken by container "
                    f"{holder.container_name or holder.container_id[:12]}",
                    hint="restore with --ignore-static-ip to take another address",
                )
    if not opts.ignore_volumes:
        for volume in att.named_volumes():
            if volumes.exists(volume.name):
                raise ConflictError(
                    f"volume with name {volume.name} already exists. "
                    "Use --ignore-volumes to not restore content of volumes",
                    hint=f"or remove it first: amber volume rm {volume.name}",
                )
    for bind in att.binds():
        if not bind.source.exists():
            raise NotFoundError(
                f"bind mount source {bind.source} (at {bind.destination}) of checkpoint archive {head.path} "
                "does not exist on this host",
                hint=f"create {bind.source} first (with the data the container needs)",
            )
    return att


def import_volumes(
    volumes: VolumeService, att: Attachments, unpack: Path, cid: str, opts: RestoreOptions
) -> dict[str, Path]:
    """Recreate the named volumes from the unpacked archive (empty ones with --ignore-volumes,
    or when the archive has none), record the container as their user. Returns destination ->
    source for the mounts amber provides: the volumes, and (with --trust-archive) the binds.

    Raises ArchiveError (a hostile or missing volume tar), ConflictError (the volume exists)."""
    provided: dict[str, Path] = {}
    for volume in att.named_volumes():
        tar = unpack / archive_member(volume.name)
        if opts.ignore_volumes or (not tar.is_file() and volumes.exists(volume.name)):
            volumes.create(volume.name, exist_ok=True, anonymous=volume.anonymous)
        elif not tar.is_file():
            raise ArchiveError(
                f"checkpoint archive lacks {archive_member(volume.name)}, the content of volume {volume.name}",
                hint="restore with --ignore-volumes to start with an empty volume",
            )
        else:
            with tar.open("rb") as f:
                where = f"{archive_member(volume.name)} in {unpack}"
                volumes.import_(volume.name, f, archive_name=where, anonymous=volume.anonymous)
        volumes.use(volume.name, cid)
        provided[volume.destination] = volumes.layout.volume_data(volume.name)
    if opts.trust_archive:
        provided.update({b.destination: b.source for b in att.binds()})
    shutil.rmtree(unpack / "volumes", ignore_errors=True)
    return provided


def keep_connections(head: archive.ArchiveHead, conntrack_file: Path) -> None:
    """Put the conntrack entries amber's archive records where restore_in_place reads them."""
    own = head.config_dump.extra.get(attach.CONFIG_KEY)
    items = own.get("conntrack") if isinstance(own, dict) else None
    if isinstance(items, list) and items:
        state.atomic_write_json(conntrack_file, {"entries": items})


def check_network(head: archive.ArchiveHead, networks: NetworkService) -> CheckResult:
    """`amber archive check`'s network row: the network the archive needs, and whether its
    recorded IP can be had here. Changes nothing (beyond making the default network)."""
    try:
        status = archive_status(head)
    except ArchiveError as exc:
        return CheckResult("network", CheckStatus.FAIL, exc.message, exc.hint or "")
    att = attach.from_config(head.config_dump.extra, status)
    if att.network is None:
        return CheckResult("network", CheckStatus.OK, "no network: loopback only", "")
    subnet = recorded_subnet(status, att.network)
    net = find_network(networks, att.network, subnet)
    ip = attach.recorded_address(status, att.network)[0]
    if net is None:
        what = f"network {att.network} (subnet {subnet or 'unknown'}) is not on this host"
        return CheckResult("network", CheckStatus.FAIL, what, missing_network_hint(att.network, subnet))
    if ip is None:
        return CheckResult("network", CheckStatus.OK, f"network {net.name}: a new address", "")
    holder = next((x for x in networks.leases(net.name) if x.ip == ip), None)
    if holder is not None:
        who = holder.container_name or holder.container_id[:12]
        return CheckResult(
            "network", CheckStatus.FAIL, f"IP {ip} of network {net.name} is taken by container {who}",
            "restore with --ignore-static-ip to take another address",
        )  # fmt: skip
    if ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network(net.subnet):
        return CheckResult(
            "network", CheckStatus.FAIL, f"IP {ip} is not in network {net.name} ({net.subnet})",
            "restore with --ignore-static-ip to take an address of the network",
        )  # fmt: skip
    return CheckResult("network", CheckStatus.OK, f"network {net.name}: IP {ip} is free", "")


__all__ = [
    "archive_status",
    "check_network",
    "find_network",
    "import_volumes",
    "keep_connections",
    "missing_network_hint",
    "plan",
    "recorded_subnet",
]
