"""Helpers for the real-stack tests of containers with networks, ports and volumes: a network of
the test's own (a 10.89.x.0/24 of its session's, tests/subnets.py), free host ports, an HTTP
server in the demo image, a client in a network namespace of the test's own, and the check that
nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests import subnets
from tests.conftest import Amber

needs_netavark = pytest.mark.skipif(
    not os.access("/usr/lib/podman/netavark", os.X_OK) or shutil.which("nft") is None,
    reason="needs netavark and nft (scripts/setup-host.sh)",
)

# busybox httpd serving /www; index.html holds `text`.
HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec busybox httpd -f -p 8080 -h /www"


def free_subnet() -> str:
    """A 10.89.x.0/24 of this session's own, held until it ends (tests/subnets.py)."""
    return subnets.reserve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 1000}{random.randint(100, 999)}"


def make_network(amber: Amber, subnet: str | None = None) -> tuple[str, str]:
    """(name, subnet) of a new network of the test's own amber root."""
    name, subnet = unique("tn"), subnet or free_subnet()
    assert amber("network", "create", "--subnet", subnet, name) == 0
    return name, subnet


def fetch(port: int, path: str = "/index.html", timeout: float = 10.0) -> str:
    """GET http://127.0.0.1:PORT/PATH, retried until it answers (or AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:  # noqa: S310
                return str(r.read().decode().strip())
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}: {last}")


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def address(amber: Amber, name: str, network: str) -> tuple[str, str]:
    """(IP, MAC) of container `name` on `network`, as inspect shows them."""
    data: dict[str, Any] = amber.fresh_engine().containers.inspect(name)
    net = data["NetworkSettings"]["Networks"][network]
    return str(net["IPAddress"]), str(net["MacAddress"])


def run_ok(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def links() -> str:
    return run_ok("ip", "-o", "link")


def assert_nothing_left(amber: Amber, bridges: list[str]) -> None:
    """No lease, no bridge of the test's networks, no DNAT rule of its ports."""
    engine = amber.fresh_engine()
    for net in engine.networks.list():
        assert engine.networks.leases(net.name) == [], f"leases left on {net.name}"
    text = links()
    for bridge in bridges:
        assert f" {bridge}:" not in text, f"bridge {bridge} left"


def bridge_of(amber: Amber, network: str) -> str:
    return amber.fresh_engine().networks.get(network).bridge


@dataclass
class Client:
    """A network namespace of the test's own, joined to a network's bridge by a veth pair."""

    ns: str
    veth: str
    ip: str

    def run(self, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], text=True, **kwargs)

    def link(self, up: bool) -> None:
        run_ok("ip", "link", "set", self.veth, "up" if up else "down")


@contextlib.contextmanager
def client_on(bridge: str, subnet: str) -> Iterator[Client]:
    """A client namespace on `bridge` with address .250 of `subnet`, the gateway as its route."""
    net = ipaddress.IPv4Network(subnet)
    ns, veth = unique("tcl"), unique("tv")
    ip, gateway = str(net.network_address + 250), str(net.network_address + 1)
    run_ok("ip", "netns", "add", ns)
    try:
        run_ok("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        run_ok("ip", "link", "set", f"{veth}p", "netns", ns)
        run_ok("ip", "link", "set", veth, "master", bridge, "up")
        inside = ["ip", "netns", "exec", ns]
        run_ok(*inside, "ip", "addr", "add", f"{ip}/{net.prefixlen}", "dev", f"{veth}p")
        run_ok(*inside, "ip", "link", "set", f"{veth}p", "up")
        run_ok(*inside, "ip", "link", "set", "lo", "up")
        run_ok(*inside, "ip", "route", "add", "default", "via", gateway)
        yield Client(ns, veth, ip)
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
