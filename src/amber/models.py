"""Typed records that cross layers: images, containers, their states, checkpoint reports."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"
    CHECKPOINTED = "checkpointed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ImageConfig:
    env: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    workdir: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageConfig:
        return cls(
            env=[str(x) for x in d.get("env") or []],
            entrypoint=[str(x) for x in d.get("entrypoint") or []],
            cmd=[str(x) for x in d.get("cmd") or []],
            workdir=str(d.get("workdir") or ""),
        )


@dataclass(frozen=True)
class Image:
    id: str  # sha256 hex of the image's canonical config; stable for the same content
    names: list[str]  # normalized references, e.g. localhost/busybox:fixture
    layers: list[str]  # layer digests (sha256 hex of the uncompressed tar), bottom first
    created: str  # RFC 3339
    size: int  # bytes of extracted content
    config: ImageConfig = field(default_factory=ImageConfig)
    # sha256 hex of the OCI/docker config blob: the image's ID in podman's and containerd's
    # stores ("" for a rootfs tarball, which has no config blob)
    config_digest: str = ""
    # NAME@sha256:<manifest digest> as a registry serves it (pulled images; "" otherwise)
    repo_digest: str = ""

    @property
    def name(self) -> str:
        return self.names[0] if self.names else self.id[:12]

    @property
    def peer_id(self) -> str:
        """The ID other engines know this image by: the config digest, else amber's own ID."""
        return self.config_digest or self.id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Image:
        return cls(
            id=str(d["id"]),
            names=[str(n) for n in d.get("names", [])],
            layers=[str(x) for x in d.get("layers", [])],
            created=str(d.get("created", "")),
            size=int(d.get("size", 0)),
            config=ImageConfig.from_dict(d.get("config") or {}),
            config_digest=str(d.get("config_digest") or ""),
            repo_digest=str(d.get("repo_digest") or ""),
        )


@dataclass(frozen=True)
class Container:
    """What amber knows of a container: its configuration (fixed) and last recorded state."""

    id: str
    name: str
    image_id: str
    image_name: str
    runtime: str  # runtime name as recorded (e.g. "crun") -- what goes into config.dump
    runtime_path: str  # absolute path of the runtime binary used
    command: list[str]
    created: str  # RFC 3339
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int | None = None
    started: str = ""
    finished: str = ""
    checkpointed: str = ""
    restored: bool = False
    restored_from: str = ""  # archive path, when made by restore --import
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"  # what stop sends first (--stop-signal)
    stop_timeout: float = 10.0  # seconds stop waits before KILL (--stop-timeout)
    auto_remove: bool = False  # --rm: removed when it exits

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = str(self.status)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Container:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            image_id=str(d.get("image_id", "")),
            image_name=str(d.get("image_name", "")),
            runtime=str(d.get("runtime", "")),
            runtime_path=str(d.get("runtime_path", "")),
            command=[str(x) for x in d.get("command", [])],
            created=str(d.get("created", "")),
            status=Status(d.get("status", "unknown")),
            pid=int(d.get("pid", 0)),
            exit_code=None if d.get("exit_code") is None else int(d["exit_code"]),
            started=str(d.get("started", "")),
            finished=str(d.get("finished", "")),
            checkpointed=str(d.get("checkpointed", "")),
            restored=bool(d.get("restored", False)),
            restored_from=str(d.get("restored_from", "")),
            labels={str(k): str(v) for k, v in (d.get("labels") or {}).items()},
            stop_signal=str(d.get("stop_signal") or "TERM"),
            stop_timeout=float(d.get("stop_timeout", 10.0)),
            auto_remove=bool(d.get("auto_remove", False)),
        )


@dataclass(frozen=True)
class Report:
    """One container's checkpoint or restore: what podman's --print-stats reports."""

    id: str
    name: str
    runtime_duration_us: int
    criu_statistics: dict[str, int]
    export: str | None = None
