"""A container's attachments as recorded (its network, published ports, volumes, tmpfs): the
record alone, which every command on a container reads. Parsing them from the command line and
acting on them (netavark, the mount specs, the volume store) are imported where they are used,
so `stop`, `rm` or `inspect` of a container pay for what it has, not for every network code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from amber.adapters import state
from amber.errors import UsageError

if TYPE_CHECKING:
    from amber.adapters.netavark import PortMapping
    from amber.engine.mount_specs import BindMount, MountSpec, VolumeMount

DEFAULT_NETWORK = "amber"  # the network a container joins unless told (engine.networks makes it)
NO_NETWORK = "none"
CONFIG_KEY = "amberAttachments"  # amber's own key in config.dump (podman ignores unknown keys)


@dataclass(frozen=True)
class Attachments:
    """What a container is attached to. `network` None: loopback only (`--network none`)."""

    network: str | None = None
    ip: str | None = None
    mac: str | None = None
    ports: tuple[PortMapping, ...] = ()
    volumes: tuple[str, ...] = ()  # -v specs as given (an anonymous one as NAME:/path, named at create)
    tmpfs: tuple[str, ...] = ()  # --tmpfs specs as given
    anonymous: tuple[str, ...] = ()  # the names amber gave the anonymous volumes
    aliases: tuple[str, ...] = ()  # --network-alias: more names it resolves by on a DNS network

    @classmethod
    def parse(
        cls,
        network: str | None = DEFAULT_NETWORK,
        *,
        ip: str | None = None,
        mac: str | None = None,
        publish: Sequence[str] = (),
        volumes: Sequence[str] = (),
        tmpfs: Sequence[str] = (),
        aliases: Sequence[str] = (),
    ) -> Attachments:
        """The attachments of `run`/`create`'s options (`network` "none": no network).

        Raises UsageError for a bad port mapping, IP, volume or tmpfs spec, or network options
        given with --network none."""
        import secrets

        from amber.adapters.netavark import PortMapping
        from amber.engine import mount_specs, net_alloc
        from amber.engine.mount_specs import VolumeMount

        net = None if network in (None, NO_NETWORK) else network
        if net is None and (ip or mac or publish or aliases):
            raise UsageError(
                "--ip, --mac-address, --publish and --network-alias need a network, not --network none",
                hint="leave them out, or pick a network with --network NAME",
            )
        if ip is not None:
            net_alloc.parse_ip(ip, "--ip")
        mount_specs.parse(volumes, tmpfs)
        ports = tuple(PortMapping.from_string(p) for p in publish)
        named, anonymous = [], []
        for text in volumes:
            spec = mount_specs.parse_volume(text)
            if isinstance(spec, VolumeMount) and spec.anonymous:
                anonymous.append(secrets.token_hex(32))  # podman's anonymous volume names
                text = f"{anonymous[-1]}:{spec.destination}"
            named.append(text)
        mac = mac.lower() if mac else None
        return cls(net, ip, mac, ports, tuple(named), tuple(tmpfs), tuple(anonymous), tuple(aliases))

    def mount_specs(self) -> list[MountSpec]:
        if not self.volumes and not self.tmpfs:
            return []  # what parsing none gives, without importing the mount specs
        from amber.engine import mount_specs
        from amber.engine.mount_specs import VolumeMount

        return [
            replace(m, anonymous=True) if isinstance(m, VolumeMount) and m.name in self.anonymous else m
            for m in mount_specs.parse(self.volumes, self.tmpfs)
        ]

    def named_volumes(self) -> list[VolumeMount]:
        specs = self.mount_specs()
        if not specs:
            return []
        from amber.engine.mount_specs import VolumeMount

        return [m for m in specs if isinstance(m, VolumeMount)]

    def binds(self) -> list[BindMount]:
        specs = self.mount_specs()
        if not specs:
            return []
        from amber.engine.mount_specs import BindMount

        return [m for m in specs if isinstance(m, BindMount)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "ip": self.ip,
            "mac": self.mac,
            "ports": [p.to_dict() for p in self.ports],
            "volumes": list(self.volumes),
            "tmpfs": list(self.tmpfs),
            "anonymous": list(self.anonymous),
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Attachments:
        """Raises KeyError, TypeError or ValueError on a malformed record."""

        ports = d.get("ports") or []
        if ports:
            from amber.adapters.netavark import PortMapping

        def text(key: str) -> str | None:
            value = d.get(key)
            return None if value is None else str(value)

        return cls(
            network=text("network"),
            ip=text("ip"),
            mac=text("mac"),
            ports=tuple(PortMapping.from_dict(p) for p in ports),
            volumes=tuple(str(v) for v in d.get("volumes") or []),
            tmpfs=tuple(str(t) for t in d.get("tmpfs") or []),
            anonymous=tuple(str(a) for a in d.get("anonymous") or []),
            aliases=tuple(str(a) for a in d.get("aliases") or []),
        )


def load(path: Path) -> Attachments:
    """The attachments recorded at `path`; none (loopback only) when nothing is recorded."""
    try:
        return Attachments.from_dict(state.read_json(path))
    except FileNotFoundError:
        return Attachments()


def save(path: Path, attachments: Attachments) -> None:
    state.atomic_write_json(path, attachments.to_dict())


class RestoreAttachOptions(TypedDict, total=False):
    """restore's network and volume keyword options (podman's flags)."""

    ignore_static_ip: bool  # take a new IP, not the recorded one
    ignore_static_mac: bool  # take a new MAC, not the recorded one
    ignore_volumes: bool  # with an archive: leave the named volumes' content out
    publish: Sequence[str] | None  # with an archive: replaces the recorded port mappings
