"""The container's cgroups: removed (with any child a runtime or CRIU made) when it is gone, and
thawed when a dump killed half way left them frozen.

crun leaves a `.proxy-crun` child behind after a restore on cgroup v1, and a restore that fails
inside CRIU leaves the whole tree; the next container of that id could not use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from amber.errors import ConflictError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: the v1 controllers, the unified one, or the v2 root."""
    found = [CGROUP_ROOT] if (CGROUP_ROOT / "cgroup.controllers").exists() else []
    if CGROUP_ROOT.is_dir():
        found += [d for d in sorted(CGROUP_ROOT.iterdir()) if d.is_dir() and not d.is_symlink()]
    return found


def remove(cgroups_path: str) -> list[str]:
    """Remove the cgroup at `cgroups_path` (cgroupfs notation) in every hierarchy, deepest first.

    Returns the directories that could not be removed (a process still in them).
    """
    rel = cgroups_path.strip("/")
    if not rel or ".." in rel.split("/"):
        return []
    left: list[str] = []
    for hierarchy in hierarchies():
        top = hierarchy / rel
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
    return left


def refuse_existing(cgroups_path: str, owner: str) -> None:
    """Raise ConflictError when the cgroup at `cgroups_path` exists in any hierarchy.

    A container never joins a cgroup it did not make: another container's (of another amber
    root, say) would then be killed with it.
    """
    rel = cgroups_path.strip("/")
    found = [str(h / rel) for h in hierarchies() if rel and (h / rel).is_dir()]
    if found:
        raise ConflictError(
            f"cgroup {cgroups_path} for {owner} exists already ({found[0]})",
            hint="another container uses it; remove that container, or restore under another name with --name",
        )


def _freezer_files(cgroups_path: str) -> list[tuple[Path, str, str]]:
    """(file, frozen value, thawed value) of the cgroup's freezer, in each hierarchy that has one."""
    rel = cgroups_path.strip("/")
    if not rel or ".." in rel.split("/"):
        return []
    found = []
    for hierarchy in hierarchies():
        if (hierarchy / rel / "cgroup.freeze").is_file():
            found.append((hierarchy / rel / "cgroup.freeze", "1", "0"))
        elif (hierarchy / rel / "freezer.state").is_file():
            found.append((hierarchy / rel / "freezer.state", "FROZEN", "THAWED"))
    return found


def frozen(cgroups_path: str) -> bool:
    """Is the cgroup at `cgroups_path` frozen (or freezing), in any hierarchy?"""
    for path, _frozen, thawed in _freezer_files(cgroups_path):
        try:
            if path.read_text().strip() != thawed:
                return True
        except OSError:
            continue
    return False


def thaw(cgroups_path: str) -> bool:
    """Thaw the cgroup at `cgroups_path` (a dump killed half way leaves it frozen). Returns
    whether it was frozen. Raises OSError when the freezer refuses."""
    was = frozen(cgroups_path)
    for path, _frozen, thawed in _freezer_files(cgroups_path):
        if path.read_text().strip() != thawed:
            path.write_text(thawed)
    return was
