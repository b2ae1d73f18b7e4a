"""Credentials of live processes, read from /proc: the capabilities amber itself runs with and
the uids of a container's tasks (its cgroup's processes)."""

from __future__ import annotations

from pathlib import Path

from amber.adapters.cgroups import hierarchies

CAP_SYS_RESOURCE = 24


def effective_caps(pid: str = "self") -> int:
    """The CapEff mask of process `pid` (all bits when /proc cannot tell)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return (1 << 64) - 1


def cgroup_pids(cgroups_path: str) -> list[int]:
    """The processes in the cgroup at `cgroups_path` (cgroupfs notation), any hierarchy."""
    rel = cgroups_path.strip("/")
    if not rel or ".." in rel.split("/"):
        return []
    found: set[int] = set()
    for hierarchy in hierarchies():
        procs = hierarchy / rel / "cgroup.procs"
        try:
            found.update(int(x) for x in procs.read_text().split())
        except (OSError, ValueError):
            continue
    return sorted(found)


def uids(pid: int) -> list[int]:
    """The real, effective, saved and filesystem uids of `pid` ([] when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []
