"""Two hosts on one machine for amber migrate's tests (the `two_hosts` fixture).

Network namespaces "switch" (a bridge), A, B and a client, each host joined to the switch by a
veth; private addresses 10.250.<n>.0/24 inside those namespaces only (n unique in the session).
Each host has its own amber root; B runs sshd on its address with a generated host key, a
throwaway client key and a known_hosts file. amber runs on a host through `nsenter --net`
(not `ip netns exec`, whose new mount namespace CRIU would see as foreign). Everything is torn
down afterwards: sshd, the namespaces (with their veths, bridges and nft tables), the roots.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from amber.adapters.criu_transfer import listening
from amber.adapters.run import Result, run, spawn
from tests.conftest import ROOTS_MADE, Amber

SRC = Path(__file__).resolve().parents[2] / "src"
SSHD = "/usr/sbin/sshd"
_numbers = itertools.count((os.getpid() * 7) % 200)


@dataclass
class Host:
    """One host: a network namespace, an address in it, an amber root."""

    ns: str
    address: str
    amber: Amber

    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.ns}"]

    def amber_argv(self) -> list[str]:
        """amber's command line on this host (this worktree's code), for --remote-amber too."""
        return [
            "env",
            f"PYTHONPATH={SRC}",
            sys.executable,
            "-m",
            "amber",
            "--root",
            str(self.amber.root),
            "--runroot",
            str(self.amber.runroot),
        ]

    def run(self, *argv: str, check: bool = True, timeout: float = 120.0, env: dict[str, str] | None = None) -> Result:
        """A command inside this host's network namespace."""
        return run([*self.nsenter(), *argv], check=check, timeout=timeout, env=env)

    def amber_cmd(self, *args: str, check: bool = True, timeout: float = 300.0) -> Result:
        return self.run(*self.amber_argv(), *args, check=check, timeout=timeout)

    def cleanup(self) -> None:
        ids = self.amber_cmd("ps", "-aq", check=False, timeout=60).stdout.split()
        for cid in ids:
            self.amber_cmd("rm", "-f", cid, check=False, timeout=120)
        # a container a killed restore left: the next command's recovery removes it
        for cid in self.amber_cmd("ps", "-aq", check=False, timeout=60).stdout.split():
            self.amber_cmd("rm", "-f", cid, check=False, timeout=120)
        self.amber.cleanup()


@dataclass
class TwoHosts:
    a: Host
    b: Host
    client: str  # the client's namespace
    client_address: str
    key: Path  # the throwaway client key (ssh -i)
    known_hosts: Path
    subnet: str  # the containers' network subnet (the same on both hosts)

    def ssh_args(self) -> list[str]:
        return [
            "--identity",
            str(self.key),
            "--ssh-option",
            f"UserKnownHostsFile={self.known_hosts}",
            "--ssh-option",
            "StrictHostKeyChecking=yes",
        ]

    @property
    def dest(self) -> str:
        return f"ssh://root@{self.b.address}"


def _ip(*argv: str) -> None:
    run(["ip", *argv], timeout=30)


def _listening(pid: int, host: Host, port: int) -> bool:
    """Does process `pid` listen on `port` inside `host`'s network namespace? Read from its
    /proc/PID/net/tcp(6), once it is in that namespace: until nsenter's setns, the pid's tables
    are the host's, where another sshd may listen on :22."""
    try:
        inside, netns = os.stat(f"/proc/{pid}/ns/net"), os.stat(f"/run/netns/{host.ns}")
    except OSError:
        return False
    same = (inside.st_dev, inside.st_ino) == (netns.st_dev, netns.st_ino)  # as `ip netns identify`
    return same and listening(pid, port)


@contextlib.contextmanager
def namespaces(n: int) -> Iterator[dict[str, str]]:
    names = {role: f"amig{n}{role}" for role in ("sw", "a", "b", "c")}
    made: list[str] = []
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            made.append(ns)
        sw = names["sw"]
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for index, role in enumerate(("a", "b", "c"), start=1):
            ns = names[role]
            _ip("-n", sw, "link", "add", f"p{role}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", sw, "link", "set", f"p{role}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"10.250.{n}.{index}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in reversed(made):
            run(["ip", "netns", "del", ns], check=False, timeout=30)


@contextlib.contextmanager
def sshd(host: Host, work: Path) -> Iterator[tuple[Path, Path]]:
    """sshd on `host`'s address; yields (client key, known_hosts)."""
    work.mkdir(mode=0o700)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key")], timeout=30)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_key")], timeout=30)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    host_pub = (work / "host_key.pub").read_text().split()
    (work / "known_hosts").write_text(f"{host.address} {host_pub[0]} {host_pub[1]}\n")
    (work / "sshd_config").write_text(
        f"ListenAddress {host.address}\nPort 22\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "StrictModes no\nUsePAM no\nPrintMotd no\n"
    )
    # sshd's privilege-separation directory belongs to the openssh-server package (tmpfiles makes
    # it at boot): made if missing, never removed, since another sshd may be using it right now.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = spawn([*host.nsenter(), SSHD, "-D", "-e", "-f", str(work / "sshd_config")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _listening(proc.pid, host, 22):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd did not start in {host.ns} (exit {proc.poll()})")
            time.sleep(0.05)
        yield work / "client_key", work / "known_hosts"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def two_hosts(tmp_path: Path, demo_rootfs: Path) -> Iterator[TwoHosts]:
    """Hosts A and B (each with the demo image and network "mig" of the same subnet) and a client."""
    n = next(_numbers) % 200 + 20
    with namespaces(n) as names:
        hosts: list[Host] = []
        try:
            for role, index in (("a", 1), ("b", 2)):
                amber = Amber(tmp_path / f"{role}-root", tmp_path / f"{role}-run")
                ROOTS_MADE.append(amber.root)
                host = Host(names[role], f"10.250.{n}.{index}", amber)
                hosts.append(host)
                amber.engine.images.import_image(demo_rootfs, "localhost/demo:latest")
                host.amber_cmd("network", "create", "--subnet", f"10.251.{n}.0/24", "mig")
            a, b = hosts
            with sshd(b, tmp_path / "ssh") as (key, known_hosts):
                yield TwoHosts(a, b, names["c"], f"10.250.{n}.3", key, known_hosts, f"10.251.{n}.0/24")
        finally:
            for host in hosts:
                host.cleanup()


def remote_amber(host: Host, *env: str) -> str:
    """--remote-amber for `host` (with extra VAR=VALUE settings, e.g. a crash point)."""
    argv = host.amber_argv()
    return shlex.join([argv[0], *env, *argv[1:]])
