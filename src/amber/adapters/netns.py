"""Network namespaces: one per container, kept as a bind-mounted file, loopback up.

amber makes the namespace itself (as podman does) so that CRIU sees it as external on dump and
the restore can hand a fresh one to the runtime.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from amber.adapters.mounts import is_mountpoint, is_shared
from amber.adapters.run import ACTION_TIMEOUT, find_tool, run


def create(path: Path) -> Path:
    """Create a network namespace pinned at `path`, with `lo` up."""
    if is_mountpoint(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _make_private_parent(path.parent)
    path.touch(exist_ok=True)
    unshare = find_tool("unshare", "create network namespaces")
    ip = find_tool("ip", "configure network namespaces")
    run(
        [unshare, f"--net={path}", ip, "link", "set", "lo", "up"],
        timeout=ACTION_TIMEOUT,
        what=f"could not create the network namespace {path}",
    )
    return path


def remove(path: Path) -> None:
    if is_mountpoint(path):
        res = run(["umount", str(path)], check=False, timeout=ACTION_TIMEOUT)
        if res.returncode != 0:
            run(["umount", "-l", str(path)], check=False, timeout=ACTION_TIMEOUT)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _make_private_parent(directory: Path) -> None:
    """Namespace files must not live on a shared mount: bind the directory privately if it is
    (as ip-netns does for /run/netns). On a host whose mounts are private, nothing is mounted."""
    if not is_shared(directory):
        return
    if not is_mountpoint(directory):
        run(
            ["mount", "--bind", str(directory), str(directory)],
            timeout=ACTION_TIMEOUT,
            what=f"could not prepare {directory} for network namespaces",
        )
    run(["mount", "--make-private", str(directory)], check=False, timeout=ACTION_TIMEOUT)
