"""What an archive says about its container: config.dump (podman's, containerd's and
checkpointctl's fields, plus amber's) and amber.manifest (sizes, versions), built at checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amber import __version__
from amber.adapters import criu
from amber.adapters import podman_format as fmt
from amber.engine.run_options import signal_name, signal_number
from amber.engine.store import now
from amber.errors import UsageError
from amber.layout import images_dir
from amber.models import Container, Image

STOP_SIGNAL = 15  # SIGTERM, as podman's default (config.dump stopSignal)
STOP_TIMEOUT = 10  # seconds, as podman's default (config.dump stopTimeout; 0 means SIGKILL at once)


def network_mode(c: Container) -> str:
    """podman's networkMode: "none" for a container without a network (lo only), else "bridge"."""
    network = str(getattr(c, "network", "") or "none")
    return "none" if network in ("none", "") else "bridge"


def config_dump(
    c: Container, spec: dict[str, Any], image: Image, network: Mapping[str, Any] | None = None
) -> fmt.ConfigDump:
    """config.dump: the fields podman, containerd and checkpointctl read, plus amber's own.

    rootfsImageID is the ID podman knows the image by (its config digest, amber's ID when it has
    none); amber's own ID is in the "amber" object. rootfsImageRef (NAME@DIGEST) is written when
    the registry's manifest digest is known (pulled images): containerd pulls the base image by it.
    `network`: the network and volume fields (engine.attachments.config_fields).
    """
    return fmt.ConfigDump(
        id=c.id,
        name=c.name,
        rootfs_image_id=image.peer_id,
        rootfs_image_ref=image.repo_digest or None,
        rootfs_image_name=image.name,
        raw_image_name=image.name,
        runtime=c.runtime,
        created_time=c.created,
        checkpointed_time=now(),
        command=tuple(c.command),
        amber=fmt.AmberConfigInfo(
            version=__version__, runtime_path=c.runtime_path, criu_version=criu.version_string(), image_id=image.id
        ),
        extra={
            "spec": spec,
            "pod": "",
            "namedVolumes": [],
            "logDriver": "k8s-file",
            "cgroupManager": "cgroupfs",
            "createNetNS": True,
            "networkMode": network_mode(c),
            "labels": dict(c.labels),
            "stopSignal": signal_number(c.stop_signal) or STOP_SIGNAL,
            "stopTimeout": int(c.stop_timeout),
            **(network or {}),
        },
    )


def kept_settings(config: fmt.ConfigDump) -> dict[str, Any]:
    """The Container fields a restore takes back from config.dump, as podman's restore does:
    `labels`, `stop_signal` (podman records its number) and `stop_timeout`. A field the archive
    lacks, or records with a value of the wrong kind, gets podman's default. Raises nothing."""
    extra = config.extra
    raw_labels = extra.get("labels")
    labels = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
    raw_signal = extra.get("stopSignal")
    stop_signal = "TERM"
    if isinstance(raw_signal, int | str) and not isinstance(raw_signal, bool) and str(raw_signal):
        with contextlib.suppress(UsageError):
            stop_signal = signal_name(str(raw_signal))
    raw_timeout = extra.get("stopTimeout")
    stop_timeout = float(STOP_TIMEOUT)
    if isinstance(raw_timeout, int | float) and not isinstance(raw_timeout, bool) and raw_timeout >= 0:
        stop_timeout = float(raw_timeout)
    return {"labels": labels, "stop_signal": stop_signal, "stop_timeout": stop_timeout}


def manifest(work: Path, c: Container, diff_size: int) -> fmt.AmberManifest:
    total = pages = 0
    for f in images_dir(work).iterdir():
        if f.is_file():
            size = f.stat().st_size
            total += size
            if f.name.startswith("pages-"):
                pages += size
    return fmt.AmberManifest(
        schema_version=fmt.MANIFEST_SCHEMA,
        amber_version=__version__,
        criu_version=criu.version_string(),
        container=c.name,
        runtime=c.runtime,
        sizes=fmt.ManifestSizes(
            checkpoint=total, memory_pages=pages, rootfs_diff=diff_size, extra={fmt.OTHER_SIZE: other_size(work)}
        ),
        deleted_files_first=True,  # checkpoint_export.rootfs_diff puts it there
    )


def other_size(work: Path) -> int:
    """Bytes of the archive's other members (ctr.log, stats-dump, deleted.files...), declared in
    the manifest so a restoring amber knows what the whole archive unpacks to."""
    return sum(
        f.stat().st_size for f in work.iterdir() if f.is_file() and not f.is_symlink() and f.name != fmt.ROOTFS_DIFF
    )
