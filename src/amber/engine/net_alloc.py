"""Address arithmetic for amber's networks: subnets, IPs and MACs, chosen or checked.

Pure functions over what is already taken (the caller holds the networks lock). Subnets amber
picks come from 10.89.0.0/16, private space that podman's default (10.88.0.0/16) does not use;
they are only ever configured on netavark's bridge and inside container network namespaces.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
import socket
from collections.abc import Collection, Iterable
from pathlib import Path

from amber.errors import ConflictError, UsageError

DEFAULT_SUBNET = "10.89.100.0/24"
POOL = ipaddress.IPv4Network("10.89.0.0/16")
POOL_PREFIX = 24
POOL_FIRST = 101  # 10.89.101.0/24 onwards; podman numbers its own networks from 10.89.0.0/24
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def parse_subnet(text: str, gateway: str | None = None) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """A subnet and its gateway (the first host address unless given).

    Raises UsageError for anything but an IPv4 network with room for a gateway and a container."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise UsageError(
            f"subnet {text!r} is not an IPv4 network: {exc}", hint="give it as ADDRESS/PREFIX, e.g. 10.89.7.0/24"
        ) from exc
    if net.prefixlen > 30:
        raise UsageError(f"subnet {text} is too small", hint="use a prefix of /30 or shorter, e.g. /24")
    if gateway is None:
        return net, net.network_address + 1
    gw = parse_ip(gateway, "gateway")
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise UsageError(f"gateway {gw} is not a host address of subnet {net}", hint=f"pick one inside {net}")
    return net, gw


def parse_ip(text: str, what: str = "IP address") -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise UsageError(
            f"{what} {text!r} is not an IPv4 address", hint="write it as four numbers, e.g. 10.89.7.5"
        ) from exc


def host_routes(
    route_file: Path = Path("/proc/net/route"), *, except_iface: str | None = None
) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the host already routes (default route left out, and routes through
    `except_iface`, a network's own bridge)."""
    nets = []
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] == except_iface:
            continue
        dest = socket.inet_ntoa(int(fields[1], 16).to_bytes(4, "little"))
        mask = socket.inet_ntoa(int(fields[7], 16).to_bytes(4, "little"))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen:
            nets.append(net)
    return nets


def check_subnet_free(
    net: ipaddress.IPv4Network, ours: dict[str, ipaddress.IPv4Network], routed: Iterable[ipaddress.IPv4Network]
) -> None:
    """Raises ConflictError when `net` overlaps another amber network or a route of the host."""
    for name, other in ours.items():
        if net.overlaps(other):
            raise ConflictError(
                f"subnet {net} overlaps network {name} ({other})", hint="choose another --subnet, or leave it out"
            )
    for route in routed:
        if net.overlaps(route):
            raise ConflictError(
                f"subnet {net} overlaps {route}, which this host already routes",
                hint="choose another --subnet, or leave it out for a free one",
            )


def pick_subnet(
    ours: dict[str, ipaddress.IPv4Network], routed: Collection[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    """The first /24 of 10.89.101.0 onwards that no amber network and no host route uses.

    Raises ConflictError when every one is taken."""
    taken = [*ours.values(), *routed]
    for i, candidate in enumerate(POOL.subnets(new_prefix=POOL_PREFIX)):
        if i >= POOL_FIRST and not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise ConflictError(f"no free subnet left in {POOL}", hint="give one with --subnet")


def allocate_ip(
    net: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address,
    taken: dict[str, str],
    want: str | None,
    network: str,
    after: str | None = None,
) -> str:
    """A container address in `net`: `want` if free, else the first free one after `after` (the
    last one handed out: addresses go round the subnet, as podman's do), else the lowest free one.

    `taken` maps address -> holder. Raises UsageError for an address outside the subnet (or its
    gateway, network or broadcast address), ConflictError when it is taken or the subnet is full."""
    if want is not None:
        ip = parse_ip(want)
        if ip not in net or ip in (gateway, net.network_address, net.broadcast_address):
            raise UsageError(
                f"IP {ip} is not a free host address of network {network} ({net}, gateway {gateway})",
                hint=f"pick an address inside {net} other than {gateway}, or leave --ip out",
            )
        if str(ip) in taken:
            raise ConflictError(
                f"IP {ip} of network {network} is already taken by container {taken[str(ip)]}",
                hint="pick another address, or leave --ip out",
            )
        return str(ip)
    hosts = list(net.hosts())
    start = 0
    with contextlib.suppress(ValueError):
        start = hosts.index(ipaddress.IPv4Address(after)) + 1 if after else 0
    for host in hosts[start:] + hosts[:start]:
        if host != gateway and str(host) not in taken:
            return str(host)
    raise ConflictError(f"network {network} ({net}) has no free address left", hint="detach a container first")


def allocate_mac(taken: dict[str, str], want: str | None, network: str) -> str:
    """A MAC address: `want` if valid and free, else a random locally administered one.

    Raises UsageError for a malformed, multicast or all-zero MAC, ConflictError when taken."""
    if want is None:
        while True:
            raw = bytearray(secrets.token_bytes(6))
            raw[0] = (raw[0] & 0xFC) | 0x02  # unicast, locally administered
            mac = ":".join(f"{b:02x}" for b in raw)
            if mac not in taken:
                return mac
    mac = want.lower()
    if not MAC_RE.match(mac):
        raise UsageError(f"MAC address {want!r} is malformed", hint="write six hex pairs, e.g. 02:42:0a:59:07:05")
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        raise UsageError(f"MAC address {want} is not a unicast address", hint="clear the low bit of the first byte")
    if mac in taken:
        raise ConflictError(
            f"MAC address {mac} of network {network} is already taken by container {taken[mac]}",
            hint="pick another MAC, or leave --mac-address out",
        )
    return mac
