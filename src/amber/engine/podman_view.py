"""A container as podman shows it: `podman inspect`'s fields and `podman ps --format json`'s.

Pure functions of the record, its layout and its OCI spec: nothing runs, nothing raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from amber.layout import ContainerLayout
from amber.models import Container, Status

if TYPE_CHECKING:
    from amber.adapters.netavark import PortMapping

ZERO_TIME = "0001-01-01T00:00:00Z"


def podman_status(c: Container) -> str:
    """podman's State.Status: a checkpointed container is `exited` there."""
    return "exited" if c.status == Status.CHECKPOINTED else str(c.status)


def is_checkpointed(c: Container) -> bool:
    """podman's State.Checkpointed: checkpointed and not started or restored since."""
    if c.status == Status.CHECKPOINTED:
        return True
    return bool(c.checkpointed) and c.status == Status.RUNNING and c.checkpointed > c.started


def _labels(c: Container, spec: dict[str, Any]) -> dict[str, str]:
    labels = getattr(c, "labels", None)
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    return {}


def _user(process: dict[str, Any]) -> str:
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    return "" if not uid and not gid else f"{uid}:{gid}"


def inspect_view(c: Container, paths: ContainerLayout, spec: dict[str, Any]) -> dict[str, Any]:
    """`podman inspect`'s fields for one container (those amber knows)."""
    process = spec.get("process") or {}
    args = [str(a) for a in process.get("args") or c.command]
    linux = spec.get("linux") or {}
    resources = linux.get("resources") or {}
    restored = c.restored and c.status == Status.RUNNING
    running = c.status == Status.RUNNING
    checkpointed = is_checkpointed(c)
    shown = checkpointed or restored  # podman shows the checkpoint's paths only then
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "OciVersion": str(spec.get("ociVersion", "")),
            "Status": podman_status(c),
            "Running": running,
            "Paused": str(c.status) == "paused",
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": c.pid if running else 0,
            "ExitCode": c.exit_code if c.exit_code is not None and c.exit_code >= 0 else 0,
            "Error": "",
            "StartedAt": c.started or ZERO_TIME,
            "FinishedAt": c.finished or ZERO_TIME,
            "Checkpointed": checkpointed,
            "Restored": restored,
            "CheckpointedAt": c.checkpointed if shown and c.checkpointed else ZERO_TIME,
            "RestoredAt": c.started if restored else ZERO_TIME,
            "CheckpointPath": str(paths.checkpoint) if shown else "",
            "CheckpointLog": str(paths.dump_log) if shown else "",
            "RestoreLog": str(paths.restore_log) if restored else "",
        },
        "Image": c.image_id,
        "ImageName": c.image_name,
        "Rootfs": "",
        "Name": c.name,
        "RestartCount": 0,
        "Driver": "overlay",
        "OCIRuntime": c.runtime,
        "ConmonPidFile": str(paths.conmon_pidfile),
        "PidFile": str(paths.pidfile),
        "LogPath": str(paths.log),
        "Config": {
            "Hostname": str(spec.get("hostname", "")),
            "User": _user(process),
            "Env": [str(e) for e in process.get("env") or []],
            "Cmd": args,
            "Image": c.image_name,
            "WorkingDir": str(process.get("cwd", "/")),
            "Labels": _labels(c, spec),
            "Annotations": {str(k): str(v) for k, v in (spec.get("annotations") or {}).items()},
            "Tty": bool(process.get("terminal", False)),
        },
        "HostConfig": {
            "Memory": int((resources.get("memory") or {}).get("limit") or 0),
            "PidsLimit": int((resources.get("pids") or {}).get("limit") or 0),
            "CpuQuota": int((resources.get("cpu") or {}).get("quota") or 0),
            "CpuPeriod": int((resources.get("cpu") or {}).get("period") or 0),
        },
    }


def _since(stamp: str) -> str:
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    secs = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= 2 * size:
            return f"{secs // size} {unit}"
    return f"{max(secs, 0)} seconds"


def ps_status(c: Container) -> str:
    """podman ps's STATUS: Up 3 minutes, Exited (0) 5 seconds ago, Created."""
    if c.status == Status.RUNNING:
        return f"Up {_since(c.started)}"
    if c.status in (Status.EXITED, Status.CHECKPOINTED):
        code = c.exit_code if c.exit_code is not None and c.exit_code >= 0 else 0
        stamp = c.finished or c.checkpointed
        return f"Exited ({code}) {_since(stamp)} ago" if stamp else f"Exited ({code})"
    return str(c.status).capitalize()


def _unix(stamp: str) -> int:
    with contextlib.suppress(ValueError):
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return 0


def ps_view(c: Container, ports: Sequence[PortMapping] = ()) -> dict[str, Any]:
    """`podman ps --format json`'s fields for one container; `ports` are the ones it publishes."""
    return {
        "Id": c.id,
        "Names": [c.name],
        "Image": c.image_name,
        "ImageID": c.image_id,
        "Command": list(c.command),
        "Created": _unix(c.created),
        "CreatedAt": c.created,
        "State": podman_status(c),
        "Status": ps_status(c),
        "Pid": c.pid if c.status == Status.RUNNING else 0,
        "ExitCode": c.exit_code if c.exit_code is not None and c.exit_code >= 0 else 0,
        "Exited": c.status in (Status.EXITED, Status.CHECKPOINTED),
        "StartedAt": _unix(c.started),
        "Labels": _labels(c, {}),
        "Runtime": c.runtime,
        "Checkpointed": is_checkpointed(c),
        "Ports": [_port_json(p) for p in ports],
    }


def _port_json(p: PortMapping) -> dict[str, Any]:
    """One entry of `podman ps --format json`'s Ports."""
    return {
        "host_ip": p.host_ip,
        "container_port": p.container_port,
        "host_port": p.host_port,
        "range": 1,
        "protocol": p.protocol,
    }


def ports_text(ports: Sequence[PortMapping]) -> str:
    """`ps`'s PORTS column and `{{.Ports}}`, as podman prints them: 0.0.0.0:8080->80/tcp, ..."""
    return ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.protocol}" for p in ports)


def ps_template_view(c: Container, *, no_trunc: bool = False, ports: Sequence[PortMapping] = ()) -> dict[str, Any]:
    """The fields `podman ps --format '{{...}}'` sees: ID (short unless `no_trunc`), Names,
    Command and Ports as one string each, and the JSON fields."""
    view = ps_view(c, ports)
    return {
        **view,
        "ID": c.id if no_trunc else c.id[:12],
        "Names": c.name,
        "Command": " ".join(c.command),
        "Created": c.created,
        "Ports": ports_text(ports),
    }


FILTER_KEYS = ("name", "id", "status", "label", "ancestor")


def parse_filters(filters: list[str]) -> dict[str, list[str]]:
    """`--filter KEY=VALUE` options, grouped by key. Raises UsageError for an unknown key."""
    from amber.errors import UsageError

    out: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(
                f"invalid filter {f!r}", hint="use name=, id=, status=, label= or ancestor=, e.g. --filter name=web"
            )
        out.setdefault(key, []).append(value)
    return out


def _match(c: Container, key: str, value: str) -> bool:
    import re

    if key == "name":
        try:
            return re.search(value, c.name) is not None
        except re.error:
            return value == c.name
    if key == "id":
        return c.id.startswith(value)
    if key == "status":
        return value in (str(c.status), podman_status(c))
    if key == "label":
        k, sep, v = value.partition("=")
        labels = _labels(c, {})
        return k in labels and (not sep or labels[k] == v)
    # ancestor: the image by name (with or without a tag) or id prefix
    return value in (c.image_name, c.image_name.rsplit(":", 1)[0]) or (len(value) >= 4 and c.image_id.startswith(value))


def matches(c: Container, filters: dict[str, list[str]]) -> bool:
    """podman's rule: values of one key OR'ed, different keys AND'ed."""
    return all(any(_match(c, key, v) for v in values) for key, values in filters.items())
