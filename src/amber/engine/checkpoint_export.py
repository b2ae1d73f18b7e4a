"""The export step of a checkpoint: the rootfs diff, the metadata and the archive itself, written
to a file or a stream (engine.checkpoint runs it after CRIU's dump).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.adapters import checkpoint_archive as archive
from amber.adapters import podman_format as fmt
from amber.adapters import rootfs_diff
from amber.adapters.archive_inplace import Reserved
from amber.adapters.netavark import NetworkStatus
from amber.adapters.page_pack import Packed, Placed
from amber.adapters.tar.compression import check_level
from amber.engine import archive_meta
from amber.engine import attachments as attach
from amber.engine.containers import ContainerService
from amber.engine.images import ImageService
from amber.engine.timing import timed
from amber.engine.volumes import VolumeService, archive_member
from amber.errors import PreconditionError
from amber.layout import ContainerLayout
from amber.models import Container

if TYPE_CHECKING:
    from amber.engine.checkpoint import CheckpointOptions


class Exporter:
    """Writes a dumped container's archive (its images are in a work directory)."""

    def __init__(self, containers: ContainerService, images: ImageService) -> None:
        self.containers = containers
        self.images = images

    def diff_size(self, c: Container) -> int:
        """The bytes the rootfs diff will take (sparse files' data, not their holes). Raises
        PreconditionError, before any work, for a diff whose files' apparent sizes, holes
        included, pass max_unpacked_size (no amber would restore it)."""
        size = rootfs_diff.measure_upper(self.containers.paths(c.id).upper)
        limit = self.containers.settings.max_unpacked_size
        if size.apparent > limit:
            raise PreconditionError(
                f"cannot checkpoint container {c.name} with its filesystem: its changed files are {size.apparent} "
                f"bytes (sparse files' holes included), more than max_unpacked_size ({limit} bytes) allows "
                "an archive to expand to",
                hint="checkpoint with --ignore-rootfs, or raise max_unpacked_size in the [engine] config",
            )
        return size.stored

    def rootfs_diff(
        self, c: Container, work: Path, opts: CheckpointOptions, *, streamed: bool
    ) -> tuple[list[archive.Member], int]:
        """The rootfs diff's members (deleted.files written into `work`, first: see
        AmberManifest.deleted_files_first) and the diff's size.
        `streamed`: the diff is measured now and its tar made while the archive is written (no
        copy on disk: the tree must stay as it is until then, a stopped container's does);
        else rootfs-diff.tar is written into `work` now. Raises OSError or AmberError."""
        p = self.containers.paths(c.id)
        members: list[archive.Member] = []
        diff_size = 0
        if not opts.ignore_rootfs:
            with timed("rootfs diff" + (" (measured, streamed into the archive)" if streamed else "")):
                if streamed:
                    planned = rootfs_diff.plan_rootfs_diff(p.upper)
                    diff, diff_size = planned.diff, planned.tar_size
                    if diff.tar_written:
                        members.append(archive.Streamed(fmt.ROOTFS_DIFF, diff_size, planned.write))
                else:
                    diff = rootfs_diff.create_rootfs_diff(p.upper, work / fmt.ROOTFS_DIFF)
                    if diff.tar_written:
                        members.append(fmt.ROOTFS_DIFF)
                        diff_size = (work / fmt.ROOTFS_DIFF).stat().st_size
            if diff.deleted:
                (work / fmt.DELETED_FILES).write_text(json.dumps(diff.deleted))
                members.insert(0, fmt.DELETED_FILES)
        return members, diff_size

    def _network_fields(
        self, att: attach.Attachments, status: NetworkStatus | None, p: ContainerLayout
    ) -> dict[str, Any]:
        return attach.config_fields(att, status, attach.recorded_connections(p.conntrack))

    def write(
        self,
        c: Container,
        work: Path,
        opts: CheckpointOptions,
        diff: list[archive.Member],
        diff_size: int,
        *,
        packed: Mapping[str, Packed] | None = None,
        reserved: Reserved | None = None,
        placed: Placed | None = None,
    ) -> None:
        """Write the archive; `packed`: image files already compressed (page_pack); `reserved`:
        the archive file, made before the dump, that page_pack put image `placed` into."""
        p = self.containers.paths(c.id)
        spec = json.loads(p.config_json.read_text())
        members: list[archive.Member] = []
        att = self.containers.attachments(c)
        status = attach.read_status(p.network_status)
        if status is not None:
            shutil.copyfile(p.network_status, work / fmt.NETWORK_STATUS)
            members.append(fmt.NETWORK_STATUS)
        if p.log.is_file():
            shutil.copyfile(p.log, work / fmt.CTR_LOG)
            members.append(fmt.CTR_LOG)
        members += [fmt.STATS_DUMP, fmt.CHECKPOINT_DIR, *diff]
        if not opts.ignore_volumes:
            members += _export_volumes_into(self.containers.volumes, att, work)
        image = self.images.get(c.image_id)
        head = {
            fmt.AMBER_MANIFEST: json.dumps(archive_meta.manifest(work, c, diff_size).to_dict(), indent=2).encode(),
            fmt.CONFIG_DUMP: json.dumps(
                archive_meta.config_dump(c, spec, image, self._network_fields(att, status, p)).to_dict(), indent=2
            ).encode(),
            fmt.SPEC_DUMP: json.dumps(spec, indent=2).encode(),
            fmt.STATUS_DUMP: b"{}\n",  # containerd's CRI restore reads it (an empty status is enough)
        }
        level, comp = self.level(opts), opts.archive_compression
        with timed(f"write archive ({comp})"):
            if opts.export_to is not None:
                archive.write_archive_stream(
                    opts.export_to, work, members, comp, head=head, level=level, progress=opts.progress, packed=packed
                )
            else:
                assert opts.export is not None
                archive.write_archive(
                    opts.export,
                    work,
                    members,
                    comp,
                    head=head,
                    level=level,
                    progress=opts.progress,
                    packed=packed,
                    reserved=reserved,
                    placed=placed,
                )

    def level(self, opts: CheckpointOptions) -> int | None:
        """The export's compression level: the option's, else the config's. Raises UsageError for a
        config level the chosen compression does not have."""
        if opts.compress_level is not None or opts.compression is not None:
            return opts.compress_level  # a compression chosen without a level: its own default
        level = self.containers.settings.compress_level
        check_level(opts.archive_compression, level, "config setting [engine] compress_level")
        return level


def _export_volumes_into(volumes: VolumeService, att: attach.Attachments, work: Path) -> list[str]:
    """Each named volume's content as `volumes/<name>.tar` in `work` (podman's members)."""
    members = []
    for volume in att.named_volumes():
        member = archive_member(volume.name)
        (work / member).parent.mkdir(parents=True, exist_ok=True)
        with (work / member).open("wb") as out:
            volumes.export(volume.name, out)
        members.append(member)
    return members


__all__ = ["Exporter"]
