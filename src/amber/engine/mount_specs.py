"""`-v` and `--tmpfs` specs: parsed into typed records, then turned into OCI mount entries.

-v NAME:/path[:ro|rw]     a named volume (made on first use, as podman does)
-v /path                  an anonymous volume: amber names it at create (64 hex digits, as
                          podman does) and removes it with the container on rm -v or --rm
-v /host/path:/path[:ro]  a bind mount of a host path, which must exist
--tmpfs /path[:opts]      a tmpfs (podman's defaults: rw,noexec,nosuid,nodev)
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber.engine import naming
from amber.engine.volumes import VolumeService
from amber.errors import NotFoundError, UsageError

TMPFS_DEFAULTS = ("rw", "noexec", "nosuid", "nodev")
TMPFS_FLAGS = {"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime"}
TMPFS_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"}
OPPOSITE = {"rw": "ro", "exec": "noexec", "suid": "nosuid", "dev": "nodev"}


@dataclass(frozen=True)
class VolumeMount:
    name: str  # "" for an anonymous volume not named yet (Attachments.parse names it)
    destination: str
    read_only: bool = False
    anonymous: bool = False


@dataclass(frozen=True)
class BindMount:
    source: Path
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class TmpfsMount:
    destination: str
    options: tuple[str, ...] = TMPFS_DEFAULTS


MountSpec = VolumeMount | BindMount | TmpfsMount


def _destination(text: str, spec: str) -> str:
    if not text.startswith("/"):
        raise UsageError(f"mount {spec!r}: the container path {text!r} is not absolute", hint="e.g. -v data:/data")
    if ".." in text.split("/"):
        raise UsageError(f"mount {spec!r}: the container path {text!r} contains '..'", hint="give a plain path")
    return posixpath.normpath(text)


def parse_volume(text: str) -> VolumeMount | BindMount:
    """Parse `-v SOURCE:DEST[:ro|rw]`; SOURCE starting with `/` or `.` is a host path; a lone
    absolute `DEST` is an anonymous volume (its name "" until Attachments.parse gives one).

    Raises UsageError naming the bad part."""
    parts = text.split(":")
    if len(parts) == 1 and text.startswith("/"):
        return VolumeMount("", _destination(text, text), anonymous=True)
    if len(parts) not in (2, 3) or not parts[0]:
        raise UsageError(f"volume {text!r}: expected SOURCE:DEST[:ro]", hint="e.g. -v data:/data or -v /srv:/srv:ro")
    read_only = False
    if len(parts) == 3:
        opts = parts[2].split(",")
        bad = [o for o in opts if o not in ("ro", "rw")]
        if bad or ("ro" in opts and "rw" in opts):
            raise UsageError(f"volume {text!r}: unsupported option(s) {parts[2]!r}", hint="use ro or rw")
        read_only = "ro" in opts
    source, dest = parts[0], _destination(parts[1], text)
    if source.startswith(("/", ".")):
        return BindMount(Path(os.path.abspath(source)), dest, read_only)
    if not naming.NAME_RE.match(source):
        raise UsageError(
            f"volume {text!r}: {source!r} is neither a volume name nor an absolute path",
            hint="volume names use letters, digits, '_', '.' and '-'; host paths start with /",
        )
    return VolumeMount(source, dest, read_only)


def parse_tmpfs(text: str) -> TmpfsMount:
    """Parse `--tmpfs DEST[:opt,opt=value,...]`; given options override podman's defaults.

    Raises UsageError for an unknown option."""
    dest_text, _, opts_text = text.partition(":")
    dest = _destination(dest_text, text)
    options = list(TMPFS_DEFAULTS)
    for opt in filter(None, opts_text.split(",")):
        key, eq, _ = opt.partition("=")
        if eq and key in TMPFS_KEYS:
            options = [o for o in options if o.partition("=")[0] != key] + [opt]
        elif not eq and opt in TMPFS_FLAGS:
            flip = OPPOSITE.get(opt) or next((k for k, v in OPPOSITE.items() if v == opt), None)
            options = [o for o in options if o not in (opt, flip)] + [opt]
        else:
            raise UsageError(
                f"tmpfs {text!r}: unsupported option {opt!r}",
                hint=f"use flags ({', '.join(sorted(TMPFS_FLAGS))}) or KEY=VALUE ({', '.join(sorted(TMPFS_KEYS))})",
            )
    return TmpfsMount(dest, tuple(options))


def parse(volumes: Iterable[str] = (), tmpfs: Iterable[str] = ()) -> list[MountSpec]:
    """Every `-v` and `--tmpfs` spec. Raises UsageError, also for two mounts at one path."""
    specs: list[MountSpec] = [*(parse_volume(v) for v in volumes), *(parse_tmpfs(t) for t in tmpfs)]
    seen: set[str] = set()
    for spec in specs:
        if spec.destination in seen:
            raise UsageError(f"two mounts at {spec.destination}", hint="mount one thing at each container path")
        seen.add(spec.destination)
    return specs


def oci_mounts(
    specs: Sequence[MountSpec], volumes: VolumeService, *, container_id: str | None = None
) -> list[dict[str, Any]]:
    """OCI `mounts` entries for `specs`. Named volumes are made if missing, and recorded as used
    by `container_id` when given (release them with VolumeService.release when it goes).

    Raises NotFoundError for a host path that does not exist."""
    out = []
    for spec in specs:
        if isinstance(spec, TmpfsMount):
            out.append(
                {"destination": spec.destination, "type": "tmpfs", "source": "tmpfs", "options": list(spec.options)}
            )
            continue
        if isinstance(spec, VolumeMount):
            volumes.create(spec.name, exist_ok=True, anonymous=spec.anonymous)
            if container_id is not None:
                volumes.use(spec.name, container_id)
            source = volumes.layout.volume_data(spec.name)
            options = ["rbind", "rprivate", "nosuid", "nodev"]
        else:
            source = spec.source
            if not source.exists():
                raise NotFoundError(
                    f"bind mount source {source} does not exist",
                    hint=f"create {source} on the host first, or fix the -v path",
                )
            options = ["rbind", "rprivate"]
        options.append("ro" if spec.read_only else "rw")
        out.append({"destination": spec.destination, "type": "bind", "source": str(source), "options": options})
    return out


def volume_names(specs: Iterable[MountSpec]) -> list[str]:
    """The named volumes among `specs`, in order (what a checkpoint archive exports)."""
    return [s.name for s in specs if isinstance(s, VolumeMount)]
