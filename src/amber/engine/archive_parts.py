"""The parts of a checkpoint archive `amber archive` reads besides CRIU's images: sizes from
amber's manifest or the tar headers, mounts and metadata from spec.dump, podman's network.status.
Pure functions; each says what it raises."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amber.adapters import checkpoint_archive as archive
from amber.adapters.podman_format import spec_annotations
from amber.engine.archive_models import ArchiveSummary, Metadata, Mount, NetworkInterface
from amber.errors import ArchiveError

CKPT = archive.CHECKPOINT_DIR + "/"


def manifest_sizes(head: archive.ArchiveHead) -> tuple[int, int, int] | None:
    """The sizes amber recorded in amber.manifest, if it records them."""
    sizes = head.amber_manifest.sizes if head.amber_manifest else None
    if sizes is None or sizes.checkpoint is None:
        return None
    return sizes.checkpoint, sizes.memory_pages or 0, sizes.rootfs_diff or 0


def require_parts(path: Path, tmp: Path, *, stats: bool, files: bool) -> None:
    """checkpointctl's rule: asking for statistics or open files that the archive lacks is an
    error, not an empty section. Raises ArchiveError."""
    wanted = [(stats, tmp / archive.STATS_DUMP, "dump statistics", "stats-dump")]
    wanted.append((files, tmp / archive.CHECKPOINT_DIR / "files.img", "file descriptors", "checkpoint/files.img"))
    for asked, where, what, member in wanted:
        if asked and not where.is_file():
            raise ArchiveError(
                f"failed to get {what} from {path}: it has no {member}",
                hint="leave out the option, or use an archive with that part",
            )


def member_sizes(members: Sequence[archive.MemberInfo], path: Path) -> tuple[int, int, int]:
    """Sizes from the tar headers. Raises ArchiveError when there is no checkpoint/ directory at
    all (checkpointctl's rule; an empty one is a metadata-only archive)."""
    if not any(m.name == archive.CHECKPOINT_DIR or m.name.startswith(CKPT) for m in members):
        raise ArchiveError(
            f"checkpoint archive {path}: checkpoint directory is missing in the archive file",
            hint="use an archive made by `amber checkpoint --export` or `podman container checkpoint --export`",
        )
    checkpoint = pages = diff = 0
    for m in members:
        if m.type is not archive.MemberType.FILE:
            continue
        if m.name.startswith(CKPT):
            checkpoint += m.size
            if m.name.startswith(CKPT + "pages-"):
                pages += m.size
        elif m.name == archive.ROOTFS_DIFF:
            diff = m.size
    return checkpoint, pages, diff


def mounts(spec: dict[str, Any]) -> list[Mount]:
    out = []
    mounts = spec.get("mounts")
    for m in mounts if isinstance(mounts, list) else []:
        if isinstance(m, dict):
            out.append(Mount(str(m.get("destination", "")), str(m.get("type", "")), str(m.get("source", ""))))
    return out


def metadata(head: archive.ArchiveHead, summary: ArchiveSummary) -> Metadata:
    return Metadata(summary.pod, summary.namespace, spec_annotations(head.spec))


def networks(path: Path) -> list[NetworkInterface]:
    """Podman's network.status: {network: {interfaces: {name: {subnets: [...], mac_address}}}}."""
    try:
        status = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return []
    out = []
    for net, data in status.items() if isinstance(status, dict) else []:
        ifaces = data.get("interfaces") if isinstance(data, dict) else None
        for ifname, info in ifaces.items() if isinstance(ifaces, dict) else []:
            if not isinstance(info, dict):
                continue
            subnets = [s for s in info.get("subnets") or [] if isinstance(s, dict)] or [{}]
            for s in subnets:
                out.append(
                    NetworkInterface(
                        str(net),
                        str(ifname),
                        str(s.get("ipnet", "")),
                        str(info.get("mac_address", "")),
                        str(s.get("gateway", "")),
                    )
                )
    return out
