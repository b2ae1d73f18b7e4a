"""After a restore the runtime reports as done: is the restored init really there, alive, in the
container's own cgroup? A restore whose process died (or landed in another cgroup, as when crun
misplaced it) is a failure, said loudly with what was seen -- never a success that the next
command finds dead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Seen:
    """What amber found of a restored init: `problem` is None when all is well."""

    problem: str | None
    details: tuple[str, ...] = ()


def _state(proc: Path, pid: int) -> str | None:
    """The process's one-letter state (R, S, Z...), or None when it does not exist."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def _cgroups(proc: Path, pid: int) -> list[str]:
    """The paths of /proc/PID/cgroup ("hierarchy-id:controllers:path" lines), or [] if gone."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return []
    return [line.split(":", 2)[2] for line in lines if line.count(":") >= 2]


def inspect_init(pid: int, cgroups_path: str, *, runtime_status: str | None, proc: Path = PROC) -> Seen:
    """Check the restored init `pid`: the runtime says it runs, it exists and is no zombie, and
    it is in `cgroups_path` (or below it) in at least one hierarchy. Never raises."""
    state = _state(proc, pid) if pid > 0 else None
    paths = _cgroups(proc, pid) if state is not None else []
    details = (
        f"runtime status: {runtime_status or 'unknown to the runtime'}",
        f"init pid {pid}: " + (f"state {state}" if state is not None else "no such process"),
        *(f"cgroup: {p}" for p in paths),
    )
    if runtime_status != "running":
        return Seen(f"the runtime reports it {runtime_status or 'gone'}", details)
    if state is None or state in ("Z", "X"):
        return Seen(f"its init (pid {pid}) is not alive", details)
    want = "/" + cgroups_path.strip("/")
    if cgroups_path.strip("/") and not any(p == want or p.startswith(want + "/") for p in paths):
        return Seen(f"its init (pid {pid}) is not in the container's cgroup {want}", details)
    return Seen(None, details)


__all__ = ["Seen", "inspect_init"]
