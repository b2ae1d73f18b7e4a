"""podman's checkpoint format: the archive's member names and its metadata as typed records.

A checkpoint archive (`podman container checkpoint --export`) holds config.dump (podman's
ContainerConfig, whose keys checkpointctl's lib/metadata.go names), spec.dump (the OCI spec),
network.status, stats-dump, ctr.log, checkpoint/ (CRIU's images), rootfs-diff.tar, deleted.files
and devshm-checkpoint.tar. amber adds amber.manifest (sizes, versions) in front.

Every record here is frozen, is read with `from_dict(data, source)` and written with `to_dict()`.
`from_dict` raises ArchiveError naming the source and the field when a value has the wrong shape;
keys it does not know are kept in `extra` and written back, so another engine's archive passes
through amber intact. The same goes for amber's own small state files (pending markers) and for
what an OCI runtime reports (`runc state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.adapters.podman_names import *  # noqa: F403 - the member names, re-exported
from amber.adapters.podman_names import AMBER_MANIFEST, CONFIG_DUMP, SPEC_DUMP
from amber.errors import ArchiveError, PreconditionError

MANIFEST_SCHEMA = 1  # the major version of amber.manifest this amber reads and writes
_DAMAGED = "the archive is damaged or was not written by a container engine"


class _Reader:
    """Takes the known keys out of a JSON object, checking each one's type; the rest is `extra`.

    A known key whose value is null stays in `extra`, so it is written back as it was.
    """

    def __init__(self, data: object, what: str, hint: str = _DAMAGED) -> None:
        self.what, self.hint = what, hint
        if not isinstance(data, dict):
            raise ArchiveError(f"{what}: a JSON {type(data).__name__}, not an object", hint=hint)
        self.data: dict[str, Any] = data
        self.extra: dict[str, Any] = dict(data)

    def bad(self, key: str, why: str) -> ArchiveError:
        return ArchiveError(f"{self.what}: field '{key}' {why}", hint=self.hint)

    def _take(self, key: str) -> Any:
        if self.data.get(key) is None:
            return None
        return self.extra.pop(key)

    def text(self, key: str) -> str | None:
        value = self._take(key)
        if value is not None and not isinstance(value, str):
            raise self.bad(key, f"is a {type(value).__name__}, not a string")
        return value

    def flag(self, key: str) -> bool | None:
        value = self._take(key)
        if value is not None and not isinstance(value, bool):
            raise self.bad(key, f"is a {type(value).__name__}, not a boolean")
        return value

    def count(self, key: str) -> int | None:
        value = self._take(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise self.bad(key, f"is {value!r}, not a whole number of 0 or more")
        return value

    def texts(self, key: str) -> tuple[str, ...] | None:
        value = self._take(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise self.bad(key, "is not a list of strings")
        return None if value is None else tuple(value)

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self._take(key)
        if value is not None and not isinstance(value, dict):
            raise self.bad(key, f"is a {type(value).__name__}, not an object")
        return value


def _emit(extra: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object: the unknown keys as read, then every known key that has a value."""
    out = dict(extra)
    out.update({k: v for k, v in known.items() if v is not None})
    return out


def _archive_what(source: str | Path, member: str) -> str:
    return f"checkpoint archive {source} has a malformed {member}"


# ------------------------------------------------------------------ config.dump
@dataclass(frozen=True)
class AmberConfigInfo:
    """config.dump's "amber" object: who wrote the archive, with what."""

    version: str | None = None
    runtime_path: str | None = None  # recorded, never run
    criu_version: str | None = None
    image_id: str | None = None  # amber's own image ID (rootfsImageID holds the one podman knows)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> AmberConfigInfo:
        """Raises ArchiveError naming `source` and the field when a value has the wrong type."""
        r = _Reader(data, _archive_what(source, f"{CONFIG_DUMP} (amber)"))
        return cls(r.text("version"), r.text("runtimePath"), r.text("criuVersion"), r.text("imageID"), r.extra)

    def to_dict(self) -> dict[str, Any]:
        known = {
            "version": self.version,
            "runtimePath": self.runtime_path,
            "criuVersion": self.criu_version,
            "imageID": self.image_id,
        }
        return _emit(self.extra, known)


@dataclass(frozen=True)
class ConfigDump:
    """config.dump: podman's ContainerConfig (the keys checkpointctl reads), plus amber's own.

    None means the archive does not record the field.
    """

    id: str | None = None
    name: str | None = None
    rootfs_image: str | None = None  # rootfsImage (CRI-O)
    rootfs_image_ref: str | None = None  # rootfsImageRef (CRI-O)
    rootfs_image_name: str | None = None  # rootfsImageName
    rootfs_image_id: str | None = None  # rootfsImageID (podman)
    raw_image_name: str | None = None  # RawImageName (podman)
    runtime: str | None = None  # the OCI runtime that wrote the checkpoint: matched, never run
    created_time: str | None = None
    checkpointed_time: str | None = None
    restored_time: str | None = None
    restored: bool | None = None
    command: tuple[str, ...] | None = None
    amber: AmberConfigInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = (
        ("id", "id"),
        ("name", "name"),
        ("rootfs_image", "rootfsImage"),
        ("rootfs_image_ref", "rootfsImageRef"),
        ("rootfs_image_name", "rootfsImageName"),
        ("rootfs_image_id", "rootfsImageID"),
        ("raw_image_name", "RawImageName"),
        ("runtime", "runtime"),
        ("created_time", "createdTime"),
        ("checkpointed_time", "checkpointedTime"),
        ("restored_time", "restoredTime"),
    )

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> ConfigDump:
        """Raises ArchiveError naming `source` and the field when a value has the wrong type."""
        r = _Reader(data, _archive_what(source, CONFIG_DUMP))
        texts = {attr: r.text(key) for attr, key in cls._KEYS}
        restored, command, amber = r.flag("restored"), r.texts("command"), r.obj("amber")
        info = None if amber is None else AmberConfigInfo.from_dict(amber, source)
        return cls(**texts, restored=restored, command=command, amber=info, extra=r.extra)

    def to_dict(self) -> dict[str, Any]:
        known: dict[str, Any] = {key: getattr(self, attr) for attr, key in self._KEYS}
        known["restored"] = self.restored
        known["command"] = None if self.command is None else list(self.command)
        known["amber"] = None if self.amber is None else self.amber.to_dict()
        return _emit(self.extra, known)

    @property
    def image_refs(self) -> tuple[str, str]:
        """(name, id) of the image the container ran, "" where not recorded."""
        return self.rootfs_image_name or "", self.rootfs_image_id or ""

    @property
    def amber_image_id(self) -> str:
        """amber's own ID of the image, when amber wrote the archive; "" otherwise."""
        return (self.amber.image_id if self.amber else None) or ""

    @property
    def criu_version(self) -> str:
        return (self.amber.criu_version if self.amber else None) or ""


# ------------------------------------------------------------------ amber.manifest
OTHER_SIZE = "other"  # in ManifestSizes.extra: bytes of the members besides checkpoint/ and the rootfs diff


@dataclass(frozen=True)
class ManifestSizes:
    """Bytes of checkpoint/ (all images), of its pages-*.img, and of rootfs-diff.tar."""

    checkpoint: int | None = None
    memory_pages: int | None = None
    rootfs_diff: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> ManifestSizes:
        """Raises ArchiveError naming `source` and the field when a size is not a count."""
        r = _Reader(data, _archive_what(source, f"{AMBER_MANIFEST} (sizes)"))
        return cls(r.count("checkpoint"), r.count("memory_pages"), r.count("rootfs_diff"), r.extra)

    def to_dict(self) -> dict[str, Any]:
        known = {"checkpoint": self.checkpoint, "memory_pages": self.memory_pages, "rootfs_diff": self.rootfs_diff}
        return _emit(self.extra, known)


@dataclass(frozen=True)
class AmberManifest:
    """amber.manifest, the first member of amber's archives.

    `schema_version` is the major version: additions keep it (old readers keep unknown keys);
    a change an older amber would misread bumps it, and an older amber then refuses the archive.
    """

    schema_version: int = MANIFEST_SCHEMA
    amber_version: str | None = None
    criu_version: str | None = None
    container: str | None = None
    runtime: str | None = None
    sizes: ManifestSizes | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # deleted.files, when there is one, comes before rootfs-diff.tar: a restore can then apply
    # the diff while it reads it (the deletions go first), with no copy of it made.
    deleted_files_first: bool | None = None

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> AmberManifest:
        """Raises ArchiveError for a bad shape, PreconditionError for a newer schema version."""
        r = _Reader(data, _archive_what(source, AMBER_MANIFEST))
        version = r.count("schema_version")
        if version is None or version < 1:
            raise r.bad("schema_version", "is missing or not a version number (1 or more)")
        if version > MANIFEST_SCHEMA:
            raise PreconditionError(
                f"checkpoint archive {source} was written by a newer amber: its {AMBER_MANIFEST} has "
                f"schema version {version}, this amber reads version {MANIFEST_SCHEMA}",
                hint="restore or inspect it with the amber version that wrote it, or a newer one",
            )
        amber_version, criu_version = r.text("amber_version"), r.text("criu_version")
        container, runtime, sizes = r.text("container"), r.text("runtime"), r.obj("sizes")
        parsed = None if sizes is None else ManifestSizes.from_dict(sizes, source)
        first = r.flag("deleted_files_first")
        return cls(version, amber_version, criu_version, container, runtime, parsed, r.extra, first)

    def to_dict(self) -> dict[str, Any]:
        known = {
            "schema_version": self.schema_version,
            "amber_version": self.amber_version,
            "criu_version": self.criu_version,
            "container": self.container,
            "runtime": self.runtime,
            "sizes": None if self.sizes is None else self.sizes.to_dict(),
            "deleted_files_first": self.deleted_files_first,
        }
        return _emit(self.extra, known)

    @property
    def images_size(self) -> int:
        """Bytes the checkpoint images take unpacked, 0 when not recorded."""
        return (self.sizes.checkpoint or 0) if self.sizes else 0


# ------------------------------------------------------------------ amber's pending markers
_MARKER_HINT = "remove the marker file; amber then treats the container as it is recorded"


@dataclass(frozen=True)
class PendingCheckpoint:
    """Written while a checkpoint runs: what a killed amber leaves to be finished."""

    work: Path  # where CRIU dumps the images (the bundle, or a scratch dir)
    export: Path | None  # the archive being written, if any
    stops: bool  # whether the dump stops the container
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> PendingCheckpoint:
        """Raises ArchiveError naming the marker file and the field for a bad shape."""
        r = _Reader(data, f"the pending-checkpoint marker {source} is malformed", _MARKER_HINT)
        work, export, stops = r.text("work"), r.text("export"), r.flag("stops")
        if not work:
            raise r.bad("work", "is missing")
        return cls(Path(work), Path(export) if export else None, bool(stops), r.extra)

    def to_dict(self) -> dict[str, Any]:
        known = {"work": str(self.work), "export": str(self.export or ""), "stops": self.stops}
        return _emit(self.extra, known)


@dataclass(frozen=True)
class PendingRestore:
    """Written while a restore from an archive runs: the archive and its unpack directory."""

    archive: Path
    work: Path
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> PendingRestore:
        """Raises ArchiveError naming the marker file and the field for a bad shape."""
        r = _Reader(data, f"the pending-restore marker {source} is malformed", _MARKER_HINT)
        archive, work = r.text("archive"), r.text("work")
        if not work:
            raise r.bad("work", "is missing")
        return cls(Path(archive or ""), Path(work), r.extra)

    def to_dict(self) -> dict[str, Any]:
        return _emit(self.extra, {"archive": str(self.archive), "work": str(self.work)})


# ------------------------------------------------------------------ OCI runtime state
@dataclass(frozen=True)
class RuntimeState:
    """What `runc state` / `crun state` report for a container."""

    id: str | None = None
    status: str | None = None  # creating, created, running, paused, stopped
    pid: int | None = None
    bundle: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, source: str | Path) -> RuntimeState:
        """Raises ArchiveError naming `source` (the runtime) and the field for a bad shape."""
        r = _Reader(data, f"the state {source} reported is malformed", "check the runtime's version (amber info)")
        return cls(r.text("id"), r.text("status"), r.count("pid"), r.text("bundle"), r.extra)

    def to_dict(self) -> dict[str, Any]:
        return _emit(self.extra, {"id": self.id, "status": self.status, "pid": self.pid, "bundle": self.bundle})

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def alive(self) -> bool:
        """The runtime still has a live container (running, paused or created)."""
        return self.status in ("running", "paused", "created")


# ------------------------------------------------------------------ spec.dump
def check_spec_shape(spec: Mapping[str, Any], source: str | Path) -> None:
    """spec.dump must be an OCI spec in shape before anything is built from it.

    Raises ArchiveError naming the archive and the field.
    """

    def bad(what: str) -> ArchiveError:
        return ArchiveError(f"{_archive_what(source, SPEC_DUMP)}: {what}", hint=_DAMAGED)

    for key in ("root", "linux", "process"):
        if key in spec and not isinstance(spec[key], dict):
            raise bad(f"'{key}' is not an object")
    if not isinstance(spec.get("process", {}).get("args", []), list):
        raise bad("process.args is not a list")
    mounts = spec.get("mounts", [])
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise bad("'mounts' is not a list of objects")
    for m in mounts:
        if not isinstance(m.get("destination"), str) or not m["destination"].startswith("/"):
            raise bad("a mount has no absolute destination")
        for key in ("source", "type"):
            if key in m and not isinstance(m[key], str):
                raise bad(f"a mount's {key} is not a string")
        if "options" in m and not (isinstance(m["options"], list) and all(isinstance(o, str) for o in m["options"])):
            raise bad("a mount's options are not a list of strings")
    linux = spec.get("linux", {})
    namespaces = linux.get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(ns, dict) for ns in namespaces):
        raise bad("linux.namespaces is not a list of objects")
    if "cgroupsPath" in linux and not isinstance(linux["cgroupsPath"], str):
        raise bad("linux.cgroupsPath is not a string")


def spec_command(spec: Mapping[str, Any]) -> list[str]:
    """process.args of an OCI spec, [] when it has none."""
    process = spec.get("process")
    args = process.get("args") if isinstance(process, dict) else None
    return [str(a) for a in args] if isinstance(args, list) else []


def spec_annotations(spec: Mapping[str, Any]) -> dict[str, str]:
    """The spec's annotations as strings, {} when it has none."""
    ann = spec.get("annotations")
    return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}


__all__ = [
    "AmberConfigInfo",
    "AmberManifest",
    "ConfigDump",
    "ManifestSizes",
    "PendingCheckpoint",
    "PendingRestore",
    "RuntimeState",
    "check_spec_shape",
    "spec_annotations",
    "spec_command",
]
