"""Overlay root filesystems and the other mounts amber makes for a container (via mount(8))."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from amber.adapters.run import run


def is_mountpoint(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount lower (bottom first) + upper at target. An image with one layer still needs upper."""
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    if is_mountpoint(target):
        return
    lowerdir = ":".join(str(p) for p in reversed(lower))  # overlayfs lists the top layer first
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
        what=f"could not mount the container root filesystem at {target}")


def unmount(target: Path) -> None:
    """Unmount target if mounted (lazily, so a stray open file cannot wedge removal)."""
    if is_mountpoint(target):
        res = run(["umount", str(target)], check=False)
        if res.returncode != 0 and is_mountpoint(target):
            run(["umount", "-l", str(target)], what=f"could not unmount {target}")
