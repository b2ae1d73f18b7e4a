"""Overlay root filesystems and the other mounts amber makes for a container (via mount(8))."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from amber.adapters.run import ACTION_TIMEOUT, run


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points() -> set[str]:
    """Every mount point of our mount namespace (from /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as f:
        return {_unescape(line.split()[4]) for line in f if len(line.split()) > 4}


def is_shared(path: Path) -> bool:
    """Does the mount holding `path` propagate to peers (mountinfo's `shared:` tag)?"""
    target = os.path.abspath(path)
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = _unescape(fields[4]) if len(fields) > 4 else ""
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                optional = fields[6 : fields.index("-")] if "-" in fields else []
                best, shared = point, any(o.startswith("shared:") for o in optional)
    return shared


def is_mountpoint(path: Path) -> bool:
    """True if something is mounted at path, bind mounts of the same filesystem included."""
    return os.path.abspath(path) in mount_points()


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount lower (bottom first) + upper at target. An image with one layer still needs upper."""
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    if is_mountpoint(target):
        return
    lowerdir = ":".join(str(p) for p in reversed(lower))  # overlayfs lists the top layer first
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
        timeout=ACTION_TIMEOUT,
        what=f"could not mount the container root filesystem at {target}",
    )


def unmount(target: Path) -> None:
    """Unmount target if mounted (lazily, so a stray open file cannot wedge removal)."""
    if is_mountpoint(target):
        res = run(["umount", str(target)], check=False, timeout=ACTION_TIMEOUT)
        if res.returncode != 0 and is_mountpoint(target):
            run(["umount", "-l", str(target)], timeout=ACTION_TIMEOUT, what=f"could not unmount {target}")


def unmount_under(top: Path) -> None:
    """Unmount everything mounted below `top`, deepest first: what a runtime killed half way left
    (crun's `criu-root` bind in the bundle during a restore)."""
    prefix = str(top).rstrip("/") + "/"
    for target in sorted((m for m in mount_points() if m.startswith(prefix)), key=len, reverse=True):
        unmount(Path(target))
