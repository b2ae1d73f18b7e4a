"""podman's --ipc modes: `private` (the default), `shareable` (an IPC namespace of its own that
other containers may join) and `container:NAME` (join NAME's, which must be shareable and running).

The mode is recorded as the spec annotation `org.amber.ipc` ("shareable", or "container:<id>" of
the container joined); the joined namespace is the spec's ipc namespace path, /proc/PID/ns/ipc
of the other container's process, looked up again at every start.

Checkpoints, as CRIU can do them: CRIU dumps an IPC namespace with the process tree that owns it
and restores it as a new one, so it cannot put a restored container back into a namespace it
shares. A container that joined another's IPC namespace is refused (podman refuses to export
containers with dependencies), and so is a shareable one while a running container shares its
namespace (the two would come back apart). A shareable container nobody joins checkpoints as any.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from amber.errors import ConflictError, UsageError
from amber.models import Container, Status

ANNOTATION = "org.amber.ipc"
SHAREABLE = "shareable"
PRIVATE = "private"
JOIN_PREFIX = "container:"


def validate(mode: str) -> None:
    """Raises UsageError for a mode amber does not give."""
    if mode in (PRIVATE, SHAREABLE):
        return
    if mode.startswith(JOIN_PREFIX) and mode.removeprefix(JOIN_PREFIX):
        return
    raise UsageError(
        f"--ipc {mode} is not supported",
        hint="amber gives containers IPC namespaces of their own (private, shareable) or joins a shareable "
        "container's (container:NAME)" + ("; the host's is not shared" if mode == "host" else ""),
    )


def joined_ref(mode: str) -> str | None:
    """NAME of `container:NAME`; None for the other modes."""
    return mode.removeprefix(JOIN_PREFIX) if mode.startswith(JOIN_PREFIX) else None


def annotation_of(spec: dict[str, Any]) -> str:
    ann = spec.get("annotations")
    value = ann.get(ANNOTATION) if isinstance(ann, dict) else None
    return value if isinstance(value, str) else PRIVATE


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def ns_path(target: Container, target_spec: dict[str, Any], *, joiner: str) -> str:
    """/proc/PID/ns/ipc of `target` (its record refreshed), for the container `joiner`.

    Raises ConflictError when target's namespace is not shareable or it is not running.
    """
    if annotation_of(target_spec) != SHAREABLE:
        raise ConflictError(
            f"container {joiner} cannot join the IPC namespace of container {target.name}: it is not shareable",
            hint=f"run {target.name} with --ipc shareable, as podman asks",
        )
    if target.status != Status.RUNNING or not target.pid:
        raise ConflictError(
            f"container {joiner} cannot join the IPC namespace of container {target.name}: "
            f"{target.name} is {target.status}, not running",
            hint=f"start it first: amber start {target.name}",
        )
    return f"/proc/{target.pid}/ns/ipc"


def set_join(spec: dict[str, Any], target_id: str, path: str) -> None:
    """Make `spec` join the IPC namespace at `path` (of container `target_id`), recording which."""
    spec.setdefault("annotations", {})[ANNOTATION] = JOIN_PREFIX + target_id
    for ns in spec.get("linux", {}).get("namespaces", []):
        if isinstance(ns, dict) and ns.get("type") == "ipc":
            ns["path"] = path


def joined_id(spec: dict[str, Any]) -> str | None:
    mode = annotation_of(spec)
    return mode.removeprefix(JOIN_PREFIX) if mode.startswith(JOIN_PREFIX) else None


Lookup = Callable[[str], Container]  # container id or name -> its refreshed record
SpecOf = Callable[[Container], Path]  # container -> its config.json


def join(spec: dict[str, Any], mode: str, lookup: Lookup, spec_of: SpecOf, *, joiner: str) -> None:
    """For `--ipc container:NAME` (`mode`): make the new container's `spec` join NAME's namespace.
    Raises NotFoundError (no NAME), ConflictError (NAME not running, or not shareable)."""
    ref = joined_ref(mode)
    if ref is not None:
        target = lookup(ref)
        set_join(spec, target.id, ns_path(target, _read_spec(spec_of(target)), joiner=joiner))


def refresh_join(config_json: Path, joiner: str, lookup: Lookup, spec_of: SpecOf) -> None:
    """Before a start: point the spec's ipc namespace at the joined container's process as it is
    now. Raises ConflictError (the other container is gone, stopped, or no longer shareable)."""
    spec = _read_spec(config_json)
    target_id = joined_id(spec)
    if target_id is None:
        return
    join(spec, JOIN_PREFIX + target_id, lookup, spec_of, joiner=joiner)
    tmp = config_json.with_name(config_json.name + ".ipc-tmp")
    tmp.write_text(json.dumps(spec, indent=2))
    tmp.replace(config_json)


def check_checkpoint(
    c: Container, spec_of: SpecOf, others: Iterable[Container], refresh: Callable[[Container], Container]
) -> None:
    """Refuse what CRIU cannot checkpoint and restore as it was (see the module's docstring).

    `others`: the containers' records; `refresh` brings one up to date. Raises ConflictError.
    """
    spec = _read_spec(spec_of(c))
    target_id = joined_id(spec)
    if target_id is not None:
        raise ConflictError(
            f"container {c.name} shares the IPC namespace of another container ({target_id[:12]}): "
            "cannot checkpoint it (CRIU would restore it into an IPC namespace of its own)",
            hint="podman does not checkpoint containers with dependencies either; stop it, or run it with --ipc "
            "private or shareable",
        )
    if annotation_of(spec) != SHAREABLE:
        return
    sharing = [o for o in others if o.id != c.id and joined_id(_read_spec(spec_of(o))) == c.id]
    joiners = [o.name for o in map(refresh, sharing) if o.status in (Status.RUNNING, Status.PAUSED)]
    if joiners:
        raise ConflictError(
            f"container {c.name} shares its IPC namespace with running container(s) {', '.join(joiners)}: "
            "cannot checkpoint it (a restore would give it a new IPC namespace, apart from theirs)",
            hint=f"stop those first: amber stop {' '.join(joiners)}",
        )


__all__ = ["check_checkpoint", "join", "joined_ref", "ns_path", "refresh_join", "set_join", "validate"]
