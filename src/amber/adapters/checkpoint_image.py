"""Checkpoint images: the annotations that make an OCI image a container checkpoint.

A checkpoint image (podman's `container checkpoint --create-image`) is an OCI image with one
uncompressed layer holding the files of a checkpoint archive at `/`. What marks it is its
annotations, and each consumer keys on its own set, so amber writes all three:

- podman: `io.podman.annotations.checkpoint.*` on the manifest; it keys on `...runtime.name`;
- containerd and checkpointctl: `org.criu.checkpoint.*` (checkpointctl's lib/annotations.go);
  containerd keys on `org.criu.checkpoint.container.name` on the OCI index;
- CRI-O: `io.kubernetes.cri-o.annotations.checkpoint.name`.

`CheckpointAnnotations` is the engine-neutral record; it turns into and back from those keys.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber.adapters.checkpoint_archive import ArchiveHead
from amber.errors import ArchiveError

PODMAN = "io.podman.annotations.checkpoint."
CRIU = "org.criu.checkpoint."
CRIO_NAME = "io.kubernetes.cri-o.annotations.checkpoint.name"
PODMAN_RUNTIME = PODMAN + "runtime.name"
CRIU_NAME = CRIU + "container.name"
REF_NAME = "org.opencontainers.image.ref.name"
ENGINE = "amber"
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}

# record field -> key suffix, in podman's set and in checkpointctl's (None: that set lacks it)
_KEYS: dict[str, tuple[str | None, str | None]] = {
    "name": ("name", "container.name"),
    "runtime": ("runtime.name", "runtime.name"),
    "runtime_version": ("runtime.version", "runtime.version"),
    "raw_image_name": ("rawImageName", "rawImageName"),
    "rootfs_image_id": ("rootfsImageID", "rootfsImageID"),
    "rootfs_image_name": ("rootfsImageName", "rootfsImageName"),
    "engine": (None, "engine.name"),
    "engine_version": (None, "engine.version"),
    "podman_version": ("podman.version", None),
    "criu_version": ("criu.version", "criu.version"),
    "conmon_version": ("conmon.version", "conmon.version"),
    "host_arch": ("host.arch", "host.arch"),
    "host_kernel": ("host.kernel", "host.kernel"),
    "cgroups_version": ("cgroups.version", "cgroup.version"),
    "distribution_name": ("distribution.name", "distribution.name"),
    "distribution_version": ("distribution.version", "distribution.version"),
    "pod_name": (None, "pod.name"),
    "pod_namespace": (None, "pod.namespace"),
}


@dataclass(frozen=True)
class CheckpointAnnotations:
    """What a checkpoint image says about its checkpoint. Empty strings are left out of the keys."""

    name: str  # the container's name
    runtime: str  # the runtime that wrote the checkpoint (a name such as crun)
    runtime_version: str = ""
    raw_image_name: str = ""
    rootfs_image_id: str = ""
    rootfs_image_name: str = ""
    engine: str = ""
    engine_version: str = ""
    podman_version: str = ""
    criu_version: str = ""  # podman's form: an integer such as "40201"
    conmon_version: str = ""
    host_arch: str = ""
    host_kernel: str = ""
    cgroups_version: str = ""
    distribution_name: str = ""
    distribution_version: str = ""
    pod_name: str = ""
    pod_namespace: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckpointAnnotations:
        """From `to_dict`'s output; unknown keys are ignored. Raises ArchiveError without a name/runtime."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: str(v) for k, v in d.items() if k in known and isinstance(v, str | int)}
        if not values.get("name") or not values.get("runtime"):
            raise ArchiveError(
                "checkpoint image record lacks the container name or the runtime",
                hint="create the checkpoint image again: amber image rm it, then make it from its archive",
            )
        return cls(**values)

    def manifest_annotations(self) -> dict[str, str]:
        """All three sets: podman's, checkpointctl's (org.criu) and CRI-O's."""
        out: dict[str, str] = {}
        for field, (podman, criu) in _KEYS.items():
            value = getattr(self, field)
            if not value:
                continue
            if podman is not None:
                out[PODMAN + podman] = value
            if criu is not None:
                out[CRIU + criu] = value
        out[CRIO_NAME] = self.name
        return out

    def index_annotations(self) -> dict[str, str]:
        """What goes on the OCI index: the org.criu set (containerd reads it there) and CRI-O's."""
        return {k: v for k, v in self.manifest_annotations().items() if not k.startswith(PODMAN)}

    @classmethod
    def from_annotations(cls, *sets: Mapping[str, Any] | None) -> CheckpointAnnotations:
        """The record from manifest and/or index annotations (org.criu first, then podman's, then
        CRI-O's). Raises ArchiveError when they do not mark a checkpoint image."""
        merged: dict[str, str] = {}
        for s in sets:
            merged.update({str(k): v for k, v in (s or {}).items() if isinstance(v, str)})
        if not is_checkpoint_image(merged):
            raise ArchiveError(
                "the image is not a checkpoint image: it has none of the checkpoint annotations "
                f"({PODMAN_RUNTIME}, {CRIU_NAME}, {CRIO_NAME})",
                hint="import it as an ordinary image (amber image import), or give a checkpoint image",
            )
        values: dict[str, str] = {}
        for field, (podman, criu) in _KEYS.items():
            for key in (CRIU + criu if criu else None, PODMAN + podman if podman else None):
                if key and merged.get(key):
                    values[field] = merged[key]
                    break
        values.setdefault("name", merged.get(CRIO_NAME, ""))
        values.setdefault("runtime", "")  # CRI-O's set alone does not say; restore then asks for --runtime
        return cls(**values)


def is_checkpoint_image(*sets: Mapping[str, Any] | None) -> bool:
    """True when manifest or index annotations mark a checkpoint image (for any of the engines)."""
    keys = (PODMAN_RUNTIME, CRIU_NAME, CRIO_NAME)
    return any(isinstance(s, Mapping) and any(s.get(k) for k in keys) for s in sets)


def criu_int(version: str) -> str:
    """podman's form of a CRIU version: "4.2.1" -> "40201"; an integer stays as it is."""
    if version.isdigit():
        return version
    parts = version.split(".")
    try:
        nums = [int(p) for p in parts[:3]] + [0] * (3 - min(len(parts), 3))
    except ValueError:
        return ""
    return str(nums[0] * 10000 + nums[1] * 100 + nums[2])


@dataclass(frozen=True)
class HostFacts:
    arch: str
    kernel: str
    cgroups_version: str
    distribution_name: str
    distribution_version: str


def host_facts(root: Path = Path("/")) -> HostFacts:
    """This host's architecture (Go's names, as podman writes), kernel, cgroup version, distribution."""
    release: dict[str, str] = {}
    try:
        for line in (root / "etc/os-release").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                release[key.strip()] = value.strip().strip('"')
    except OSError:
        pass
    cgroups = "v2" if (root / "sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    machine = platform.machine()
    return HostFacts(
        ARCH.get(machine, machine), platform.release(), cgroups, release.get("ID", ""), release.get("VERSION_ID", "")
    )


def from_head(
    head: ArchiveHead,
    *,
    facts: HostFacts | None = None,
    engine_version: str = "",
    runtime_version: str = "",
    conmon_version: str = "",
) -> CheckpointAnnotations:
    """The annotations of an image made from a checkpoint archive (amber's or podman's).

    Raises ArchiveError when config.dump names no container or no runtime.
    """
    config = head.config_dump  # typed and checked when the head was read
    name, runtime = config.name, config.runtime
    if not name or not runtime:
        raise ArchiveError(
            f"checkpoint archive {head.path} does not record its container's name and runtime in config.dump",
            hint="make the checkpoint again with amber checkpoint --export or podman container checkpoint --export",
        )
    manifest_criu = head.amber_manifest.criu_version if head.amber_manifest else None
    criu = str(manifest_criu or (config.amber.criu_version if config.amber else None) or "")
    facts = facts or host_facts()

    return CheckpointAnnotations(
        name=name,
        runtime=Path(runtime.rstrip("/")).name,  # a path from an archive is only a name here
        runtime_version=runtime_version,
        raw_image_name=config.raw_image_name or config.rootfs_image_name or "",
        rootfs_image_id=config.rootfs_image_id or "",
        rootfs_image_name=config.rootfs_image_name or "",
        engine=ENGINE,
        engine_version=engine_version,
        criu_version=criu_int(criu) if criu and criu != "unknown" else "",
        conmon_version=conmon_version,
        host_arch=facts.arch,
        host_kernel=facts.kernel,
        cgroups_version=facts.cgroups_version,
        distribution_name=facts.distribution_name,
        distribution_version=facts.distribution_version,
    )
