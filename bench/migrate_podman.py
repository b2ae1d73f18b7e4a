"""podman on one of bench/migrate.py's hosts, and podman's manual way of moving a container:
`podman container checkpoint --export`, a copy to the other host, `podman container restore
--import` there.

Each host's podman is tests/peers/podman.py's (its own --root/--runroot/--tmpdir, cgroupfs, its
own network config dir), run inside the host's network namespace with `nsenter --net`, with a
bridge network "migp" of the same subnet on both. The copy goes over the hosts' ssh channel
(`ssh root@B 'cat > FILE'`, what a user without a shared disk does) or, with --podman-copy file,
is a file copy between the two hosts' directories.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path

from tests.peers.podman import Podman

NETWORK = "migp"


class HostPodman(Podman):
    """tests/peers/podman.py's Podman, every command run in network namespace `ns`."""

    def __init__(self, base: Path, ns: str) -> None:
        self.ns = ns
        super().__init__(base)

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.ns}", *super().argv(*args)]

    def setup(self, rootfs: Path, image: str, subnet: str) -> None:
        self("import", str(rootfs), image, timeout=300)
        self("network", "create", "--subnet", subnet, NETWORK)

    def start(self, name: str, runtime: str, image: str, command: list[str]) -> None:
        self(
            "run", "-d", "--name", name, "--runtime", runtime, "--network", NETWORK,
            "--log-driver", "k8s-file", image, *command,
        )  # fmt: skip

    def upper(self, name: str) -> Path:
        return Path(self("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", name).stdout.strip())

    def remove(self, name: str) -> None:
        self("rm", "-f", "-t", "0", "--ignore", name, check=False, timeout=120)


def copy_over_ssh(ns: str, ssh: list[str], dest: str, src: Path, target: Path) -> None:
    """`ssh DEST 'cat > TARGET' < SRC`, run in namespace `ns`: the archive crosses the channel."""
    with src.open("rb") as f:
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", "ssh", *ssh, dest, f"cat > {shlex.quote(str(target))}"],
            stdin=f,
            capture_output=True,
            timeout=1800,
            check=False,
        )
    if p.returncode != 0:
        raise RuntimeError(f"ssh cat to {dest} exited {p.returncode}: {p.stderr.decode(errors='replace').strip()}")


def manual_move(
    a: HostPodman, b: HostPodman, name: str, compress: str, copy: str, ssh: tuple[str, list[str], str]
) -> tuple[int, int]:
    """checkpoint --export on A, copy, restore --import on B; returns time.time_ns() before
    and after (the archives are removed). `ssh` is (A's namespace, ssh's options, destination)."""
    archive, landed = a.base / f"{name}.tar", b.base / f"{name}-in.tar"
    started = time.time_ns()
    a("container", "checkpoint", "--export", str(archive), "--compress", compress, name, timeout=1800)
    if copy == "ssh":
        copy_over_ssh(*ssh, archive, landed)
    else:  # a file copy between the hosts' directories
        shutil.copyfile(archive, landed)
    b("container", "restore", "--import", str(landed), timeout=1800)
    ended = time.time_ns()
    archive.unlink()
    landed.unlink()
    return started, ended
