"""podman with its own store: --root/--runroot in tmp, cgroupfs, its own network config dir.

Nothing it does touches the host's podman store, and `close()` removes its containers, unmounts its
store and deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.peers.oci import OciImage
from tests.peers.tools import have, sh


def have_podman() -> bool:
    return have("podman", "conmon", "criu")


class Podman:
    """One podman instance; `podman(...)` runs it with this instance's store and settings."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.runroot = base / "run"
        self.tmpdir = base / "tmp"
        self.netconf = base / "net"
        for d in (self.root, self.runroot, self.tmpdir, self.netconf):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PODMAN_IGNORE_CGROUPSV1_WARNING": "1", "TMPDIR": str(self.tmpdir)}

    def argv(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.tmpdir),
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            "--network-config-dir", str(self.netconf),
            "--storage-driver", "overlay",
            *args,
        ]  # fmt: skip

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run podman; raises PeerError with its stderr when it fails and check is set."""
        return sh(self.argv(*args), env=self.env, check=check, timeout=timeout)

    def load(self, image: OciImage) -> str:
        """Load an oci-archive and tag it with its name; returns podman's image ID (the config digest)."""
        self("load", "-q", "-i", str(image.path))
        self("tag", image.image_id, image.name)
        return self("image", "inspect", "--format", "{{.Id}}", image.name).stdout.strip()

    def inspect(self, name: str) -> dict[str, Any]:
        data = json.loads(self("container", "inspect", name).stdout)
        return dict(data[0])

    def read_file(self, name: str, path: str) -> str:
        return self("exec", name, "cat", path).stdout

    def close(self) -> None:
        """Remove every container and the whole store; unmount what podman left mounted under it."""
        with contextlib.suppress(Exception):
            self("rm", "-a", "-f", "-t", "0", check=False, timeout=60)
        with contextlib.suppress(Exception):
            self("system", "reset", "-f", check=False, timeout=60)
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Podman:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
