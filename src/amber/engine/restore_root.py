"""A restored container's root from its archive: mounted once, the deletions first, then the
rootfs diff, read in place wherever the archive allows.

- A plain archive's diff is read where it lies in the archive file after the unpack (a Span);
- a compressed archive of amber's that says its deleted.files comes first
  (AmberManifest.deleted_files_first) has its diff diverted while the archive is unpacked:
  the root is mounted, the deletions applied and the diff's tar unpacked onto it straight from
  the decompressed stream;
- any other archive (podman's compressed ones, amber's older ones) has its diff unpacked into
  the work area first and applied from there.

Applying the diff before the images are checked does not let an archive give a container
more: the diff goes into the container's own root under ROOTFS_POLICY, every image check still
runs before CRIU does, and a restore that fails is cleaned up whole (Restores._restore_from).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from amber.adapters import podman_format as fmt
from amber.engine.timing import timed

if TYPE_CHECKING:
    from amber.adapters.checkpoint_archive import ArchiveHead
    from amber.adapters.tar.extract import Divert
    from amber.engine.restore import ContainerOps
    from amber.engine.restore_options import RestoreOptions
    from amber.models import Container


@dataclasses.dataclass
class RootSteps:
    """The root-making steps of one restore from an archive, each done once, in order."""

    containers: ContainerOps
    c: Container
    head: ArchiveHead
    opts: RestoreOptions
    unpack: Path  # the work area the archive unpacks into
    image_layers: Sequence[Path]
    mounted: bool = False
    deletions_applied: bool = False
    diff_applied: bool = False

    def diverts(self) -> dict[str, Divert]:
        """What the unpack hands here instead of writing it: the rootfs diff, when it can be
        applied as it is read (see the module's docstring)."""
        manifest = self.head.amber_manifest
        if self.opts.ignore_rootfs or self.opts.complete_images is not None:
            return {}  # a migration completes the images first: the root waits for them
        if manifest is None or not manifest.deleted_files_first:
            return {}
        return {fmt.ROOTFS_DIFF: self._diff_arrives}

    def mount(self) -> None:
        """The addresses to ask for again, the connections to keep, the root mounted."""
        if self.mounted:
            return
        from amber.engine import restore_net

        p = self.containers.paths(self.c.id)
        if (self.unpack / fmt.NETWORK_STATUS).is_file() and self.opts.prepared != self.c.id:
            shutil.move(str(self.unpack / fmt.NETWORK_STATUS), p.network_status)
        restore_net.keep_connections(self.head, p.conntrack)
        self.containers.prepare_root(self.c, image_layers=self.image_layers, keep_address=self.opts.keep_address)
        self.mounted = True

    def _deletions(self) -> None:
        """deleted.files applied, when the unpack has written it (once)."""
        from amber.adapters import rootfs_diff

        deleted = self.unpack / fmt.DELETED_FILES
        if self.deletions_applied or self.opts.ignore_rootfs or not deleted.is_file():
            return
        # Deletions first: a directory the container deleted and made again is in both lists.
        paths = rootfs_diff.parse_deleted_files(deleted.read_bytes(), str(self.head.path))
        rootfs_diff.apply_deleted_files(paths, self.containers.paths(self.c.id).merged)
        self.deletions_applied = True

    def _diff_arrives(self, data: IO[bytes]) -> None:
        """The divert handler: the rootfs diff's bytes, as the archive is read."""
        self.mount()
        self._deletions()
        with timed("apply rootfs diff (streamed from the archive)"):
            self._apply_read_in_place(data)
        self.diff_applied = True

    def _apply_read_in_place(self, data: IO[bytes]) -> None:
        """The rootfs diff unpacked onto the root from `data`, a stream of it inside the archive."""
        from amber.adapters import rootfs_diff

        rootfs_diff.apply_rootfs_diff_stream(
            data,
            self.containers.paths(self.c.id).merged,
            archive=f"{self.head.path} (its {fmt.ROOTFS_DIFF})",
            max_total_size=self.containers.settings.max_unpacked_size,
        )

    def finish(self, unpacked: object) -> None:
        """After the unpack: mounted, deletions, then the diff (read in place from a plain
        archive: `unpacked` is extract_archive's spans; else from the work area), unless done."""
        from amber.adapters import rootfs_diff
        from amber.adapters.checkpoint_archive import Span

        self.mount()
        if self.opts.ignore_rootfs:
            return
        self._deletions()
        if self.diff_applied:
            return
        span = unpacked.get(fmt.ROOTFS_DIFF) if isinstance(unpacked, dict) else None
        diff = self.unpack / fmt.ROOTFS_DIFF
        with timed("apply rootfs diff"):
            if isinstance(span, Span):
                with span.open() as raw:
                    self._apply_read_in_place(raw)
            elif diff.is_file():
                rootfs_diff.apply_rootfs_diff(
                    diff,
                    self.containers.paths(self.c.id).merged,
                    max_total_size=self.containers.settings.max_unpacked_size,
                )
        self.diff_applied = True


__all__ = ["RootSteps"]
