"""The runtime rule: which runtime restores a checkpoint, decided from the archive's metadata alone.

A checkpoint written by crun does not restore with runc, nor the other way round: it fails late,
inside CRIU, after all the unpacking. So the archive records its runtime, restore uses it, and an
explicit incompatible --runtime is refused before anything is extracted. Runtimes are compared by
what they are (their --version), never by how they were spelled.
"""

from __future__ import annotations

import os

from amber.adapters import runtime
from amber.adapters.runtime import RuntimeInfo
from amber.errors import ArchiveError, PreconditionError, RuntimeMismatchError

# Which runtime kinds may restore a checkpoint written by which kind. The day runc and crun
# checkpoints become interchangeable, this is the one line to change:
#   "crun": frozenset({"crun", "runc"}), "runc": frozenset({"runc", "crun"}).
RESTORABLE_BY: dict[str, frozenset[str]] = {
    "crun": frozenset({"crun"}),
    "runc": frozenset({"runc"}),
}

# Names other engines record for these runtimes.
ALIASES = {"io.containerd.runc.v2": "runc", "io.containerd.runc.v1": "runc"}


def recorded_kind(recorded: str) -> str:
    """The kind of runtime an archive's `runtime` field names (a name, a path, an alias).

    Only the name counts: a path read from an archive is never run (it could name any program).
    """
    if recorded in ALIASES:
        return ALIASES[recorded]
    return os.path.basename(recorded.rstrip("/"))


def compatible(archive_kind: str, restorer_kind: str) -> bool:
    """Can a `restorer_kind` runtime restore what an `archive_kind` runtime checkpointed?"""
    return restorer_kind in RESTORABLE_BY.get(archive_kind, frozenset({archive_kind}))


def select_runtime(recorded: str, requested: str | None, archive: str) -> RuntimeInfo:
    """The runtime to restore `archive` with (whose checkpoint was written by `recorded`).

    Raises ArchiveError when the archive records no runtime, RuntimeMismatchError when the
    `requested` runtime cannot restore it, PreconditionError when the requested runtime (or,
    with none requested, every runtime that could restore it) is not installed. Runtimes are
    found and asked their --version through the current runner (adapters/run.py).
    """
    if not recorded:
        raise ArchiveError(
            f"checkpoint archive {archive} does not record the runtime that created it",
            hint="give the runtime that created it with --runtime (runc or crun)",
        )
    kind = recorded_kind(recorded)
    if requested:
        info = runtime.resolve(requested)
        if not compatible(kind, info.kind):
            raise RuntimeMismatchError(
                f"checkpoint archive {archive} was created with runtime '{recorded}' "
                f"and cannot be restored with runtime '{requested}'",
                hint=f"leave out --runtime, or give {kind}",
            )
        return info
    allowed = RESTORABLE_BY.get(kind, frozenset({kind})) & set(runtime.KNOWN_RUNTIMES)
    candidates = [kind] if kind in allowed else []
    candidates += sorted(allowed - {kind})
    for name in candidates:
        path = runtime.locate(name)
        if path is not None and compatible(kind, runtime.describe(path).kind):
            return runtime.describe(path)
    installed = ", ".join(f"{r.kind} ({r.path})" for r in runtime.installed()) or "none"
    raise PreconditionError(
        f"checkpoint archive {archive} was created with runtime '{recorded}', "
        f"which is not installed on this host (installed: {installed})",
        hint=f"install {kind} (make setup installs runc and crun); no other runtime can restore it",
    )
