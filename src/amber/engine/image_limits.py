"""CRIU images that could still grant more than the spec: resource limits and mounts.

CRIU restores as root: it sets every task's rlimits as recorded (raising a hard limit too) and
makes every mount of mountpoints-*.img itself. So both are checked against what amber would give,
before CRIU runs:

- rlimits: a task's hard limit may not exceed the effective spec's for that limit, or, for a
  limit the spec does not set, the one amber runs with (what the runtime would pass on). The
  kernel sizes RLIMIT_NPROC and RLIMIT_SIGPENDING from the host's memory, so an archive from a
  bigger host records more than this one gives: those two are lowered to this host's ceiling in
  the restore's copy of the images (`lower_host_sized`), never refused and never raised.
- mounts: a mount whose source the restorer provides (external: amber binds its own sources) is
  fine; any other must be a kernel file system amber mounts itself (proc, sysfs, tmpfs, devpts,
  mqueue, cgroup) or the root. A block device, overlay, fuse or debugfs CRIU would mount from the
  image's own source is refused.

Pure apart from reading the images and amber's own limits.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping, Sequence
from typing import Any

from amber.adapters.criu_images import (
    RLIM_INFINITY,
    RLIMIT_NAMES,
    ImageDir,
    MountPoint,
    Process,
    Rlimit,
    lower_rlimits,
    read_mountpoints,
    read_rlimits,
)
from amber.engine.confinement import HOST_SIZED, Violation

SAFE_FSTYPES = frozenset({"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"})
ROOT_FSTYPES = frozenset({"overlayfs", "unsupported", "auto"})  # the container's root ("/"): CRIU uses --root


def _infinite(value: int) -> bool:
    return value < 0 or value >= RLIM_INFINITY >> 1


def ceilings(spec: Mapping[str, Any]) -> dict[str, int]:
    """The highest hard limit per RLIMIT_* name (-1: unlimited): the spec's, else amber's own."""
    proc = spec.get("process")
    limits = proc.get("rlimits") if isinstance(proc, dict) else None
    out: dict[str, int] = {}
    for r in limits if isinstance(limits, list) else []:
        hard = r.get("hard") if isinstance(r, dict) else None
        if isinstance(hard, int) and not isinstance(hard, bool):
            out[str(r.get("type"))] = -1 if _infinite(hard) else hard
    return out


def _own_hard(name: str) -> int:
    try:  # by number: Python's resource module does not name every limit (RLIMIT_LOCKS)
        hard = resource.getrlimit(RLIMIT_NAMES.index(name))[1]
    except (ValueError, OSError):
        return 0
    return -1 if hard == resource.RLIM_INFINITY else hard


def rlimit_violations(limits: Sequence[Rlimit], spec: Mapping[str, Any]) -> list[Violation]:
    """Where a task's recorded hard (or soft) limit exceeds what amber would give it."""
    allowed = ceilings(spec)
    out = []
    for r in limits:
        ceiling = _ceiling(r.name, allowed)
        if ceiling < 0 or r.name in HOST_SIZED:  # unlimited here; or lowered by lower_host_sized
            continue
        if _infinite(r.hard) or r.hard > ceiling or _infinite(r.soft) or r.soft > r.hard:
            hard = "unlimited" if _infinite(r.hard) else str(r.hard)
            soft = "unlimited" if _infinite(r.soft) else str(r.soft)
            out.append(Violation(f"pid {r.pid}: {r.name}", f"soft {soft}, hard {hard}", f"hard <= {ceiling}"))
    return out


def _ceiling(name: str, allowed: Mapping[str, int]) -> int:
    return allowed[name] if name in allowed else _own_hard(name)


def host_sized_excess(limits: Sequence[Rlimit], spec: Mapping[str, Any]) -> list[Rlimit]:
    """The host-sized limits above this host's ceiling, as they will be after lowering."""
    allowed, out = ceilings(spec), []
    for r in limits:
        ceiling = _ceiling(r.name, allowed)
        own = _own_hard(r.name)  # without CAP_SYS_RESOURCE CRIU cannot set more than amber holds
        if own >= 0:
            ceiling = own if ceiling < 0 else min(ceiling, own)
        if r.name not in HOST_SIZED or ceiling < 0:
            continue
        hard = ceiling if _infinite(r.hard) or r.hard > ceiling else r.hard
        soft = hard if _infinite(r.soft) or r.soft > hard else r.soft
        if (soft, hard) != (r.soft, r.hard):
            out.append(Rlimit(r.pid, r.name, soft, hard))
    return out


def lower_host_sized(images: ImageDir, processes: Sequence[Process], spec: Mapping[str, Any]) -> list[Rlimit]:
    """Lower RLIMIT_NPROC and RLIMIT_SIGPENDING above this host's ceiling in `images` (a restore's
    own scratch copy); returns what was lowered, for the log."""
    lowered = host_sized_excess(read_rlimits(images, processes), spec)
    by_pid: dict[int, dict[str, tuple[int, int]]] = {}
    for r in lowered:
        by_pid.setdefault(r.pid, {})[r.name] = (r.soft, r.hard)
    for pid, limits in by_pid.items():
        lower_rlimits(images, pid, limits)
    return lowered


def mount_violations(mounts: Sequence[MountPoint]) -> list[Violation]:
    """Mounts CRIU would make from the image's own source that amber never makes."""
    out = []
    for m in mounts:
        if m.external or m.fstype in SAFE_FSTYPES:
            continue
        if m.mountpoint == "/" and m.fstype in ROOT_FSTYPES:
            continue
        out.append(
            Violation(
                f"{m.image}: mount {m.mountpoint}",
                f"a mount of type {m.fstype} from {m.source or '(no source)'} (root {m.root or '/'})",
                "proc, sysfs, tmpfs, devpts, mqueue, cgroup and mounts whose source amber provides",
            )
        )
    return out


def image_limit_violations(images: ImageDir, processes: Sequence[Process], spec: Mapping[str, Any]) -> list[Violation]:
    """Both checks on one dump directory. Raises ArchiveError when an image does not decode."""
    return rlimit_violations(read_rlimits(images, processes), spec) + mount_violations(read_mountpoints(images))


__all__ = [
    "HOST_SIZED",
    "ceilings",
    "host_sized_excess",
    "image_limit_violations",
    "lower_host_sized",
    "mount_violations",
    "rlimit_violations",
]
