"""The Engine's checkpoint and restore calls (a mixin of amber.Engine, engine/api.py).

eng.checkpoint("web", export="web.tar.zst")
c = eng.restore_archive("web.tar.zst", name="web2")
c = eng.restore("web")  # from its kept checkpoint
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Unpack

from amber.engine.api_images import CheckpointImageCalls
from amber.engine.services import with_runner
from amber.errors import UsageError

if TYPE_CHECKING:
    from amber.adapters.checkpoint_archive import Compression, Progress
    from amber.engine.checkpoint import Report, RestoreOptions
    from amber.engine.options import RestoreKwargs
    from amber.models import Container

PathLike = str | os.PathLike[str]

__all__ = ["CheckpointCalls"]


class CheckpointCalls(CheckpointImageCalls):
    """checkpoint, restore, restore_archive, restore_report (and, inherited, the checkpoint images')."""

    @with_runner
    def checkpoint(
        self,
        *containers: str,
        all: bool = False,
        export: PathLike | None = None,
        compress: str | Compression | None = None,
        leave_running: bool = False,
        keep: bool = False,
        tcp_established: bool = False,
        file_locks: bool = False,
        ignore_rootfs: bool = False,
        pre_checkpoint: bool = False,
        with_previous: bool = False,
        stats: bool = False,
        create_image: str | None = None,
        target: str = "podman",
        progress: Progress | None = None,
        ignore_volumes: bool = False,
        export_to: IO[bytes] | None = None,
        compress_level: int | None = None,
    ) -> list[Report]:
        """Checkpoint containers (or `all` running ones), one Report each (`stats`: with CRIU's
        statistics, --print-stats). With `export`, into a portable archive (several containers:
        one archive each, EXPORT-NAME). Raises UsageError (options), NotFoundError (container,
        export directory), ConflictError (not running, busy), PreconditionError (no CRIU support,
        no dirty-memory tracking, not root), CommandError (CRIU refused: the container runs on).
        `create_image` NAME also stores the checkpoint as a checkpoint image (one container).
        `target` is the engine meant to restore it: podman (default) or containerd (they need
        the container's root directory in different modes).
        `progress(done, total)` is called now and then while an archive is written (bytes).
        `export_to`, instead of `export`: a binary stream (a pipe, a socket) the archive of one
        container is written to as it is made; it is flushed, not closed. When writing it fails,
        AmberError says the stream is incomplete and the container is left as it was (running).
        `compress_level`: zstd 1-19, gzip 1-9 (default: the config's [engine] compress_level,
        else zstd 3, gzip 6)."""
        from amber.adapters.tar.formats import Compression
        from amber.engine.checkpoint import CheckpointOptions
        from amber.engine.options import as_path, check_checkpoint

        opts = CheckpointOptions(
            export=as_path(export) if export is not None else None,
            export_to=export_to,
            compress_level=compress_level,
            compression=Compression.parse(str(compress)) if compress is not None else None,
            leave_running=leave_running,
            keep=keep,
            tcp_established=tcp_established,
            file_locks=file_locks,
            ignore_rootfs=ignore_rootfs,
            pre_checkpoint=pre_checkpoint,
            with_previous=with_previous,
            stats=stats,
            target=target,
            progress=progress,
            ignore_volumes=ignore_volumes,
        )
        check_checkpoint(containers, opts, all=all)
        if create_image is not None:
            if export_to is not None:
                raise UsageError("--create-image cannot write to a stream", hint="export to a file, or leave one out")
            return self._checkpoint_to_image(containers, opts, create_image)
        if all:
            return self.services.checkpoints.checkpoint_all(opts)
        return self.services.checkpoints.checkpoint(list(containers), opts)

    def restore(self, container: str, **options: Unpack[RestoreKwargs]) -> Container:
        """Bring a checkpointed container back from its kept checkpoint (`amber restore NAME`).
        `options` (engine.options.RestoreKwargs): runtime, keep, tcp_established, tcp_close,
        file_locks, stats, ignore_static_ip, ignore_static_mac (name, ignore_rootfs,
        ignore_volumes and publish are an archive's: UsageError here, as the CLI's).

        Raises NotFoundError, ConflictError (not checkpointed, busy), RuntimeMismatchError
        (`runtime` cannot restore it), CommandError (CRIU refused), PreconditionError.
        """
        return self.restore_report(container, **options)[0]

    def restore_archive(self, archive: PathLike | IO[bytes], **options: Unpack[RestoreKwargs]) -> Container:
        """A new running container from a checkpoint archive (`amber restore --import`), under
        the archive's name or `name`, with the archive's runtime unless `runtime` is given.
        `archive` is a path, or a binary reader (stdin, a socket's makefile("rb")) read once, with
        the same checks: a terminal is refused (UsageError), a stream cut short is an ArchiveError.
        `options` (engine.options.RestoreKwargs) as `restore`'s, and name, ignore_rootfs,
        trust_archive, progress, ignore_volumes, publish.

        Raises UsageError (options), NotFoundError (archive, its image), ConflictError (name
        taken), ArchiveError (malformed or hostile archive), RuntimeMismatchError (`runtime`
        cannot restore it), PreconditionError (runtime or CRIU missing, CPU differs, not root),
        CommandError (CRIU refused). A failed restore leaves nothing behind. The container gets
        amber's privileges; an archive asking for more is refused (ArchiveError) unless
        `trust_archive`.
        """
        return self.restore_report(None, archive=archive, **options)[0]

    @with_runner
    def restore_report(
        self,
        container: str | None = None,
        *,
        archive: PathLike | IO[bytes] | None = None,
        **options: Unpack[RestoreKwargs],
    ) -> tuple[Container, Report]:
        """`restore` (a container) or `restore_archive` (an `archive`), with the Report that
        --print-stats shows. Raises what those raise, and UsageError unless exactly one of
        `container` and `archive` is given. A `container` that names no container but a
        checkpoint image restores that image (`restore_image`). `progress(done, total)` is
        called now and then while an archive is unpacked (bytes)."""
        from amber.engine.options import as_path, check_restore, restore_options

        opts = restore_options(self.runtime_choice, **options)
        if archive is None and container and self.is_checkpoint_image(container):
            check_restore(None, opts, archive_given=True)
            return self._restore_image(container, opts)
        check_restore(container, opts, archive_given=archive is not None)
        if isinstance(archive, str | os.PathLike):
            return self._restore_archive(as_path(archive), opts)
        if archive is not None:
            return self._restore_stream(archive, opts)
        assert container is not None  # check_restore refuses neither
        return self._restore_container(container, opts)

    # The one call into the checkpoint service per restore operation.
    def _restore_container(self, container: str, opts: RestoreOptions) -> tuple[Container, Report]:
        return self.services.checkpoints.restore(container, opts)

    def _restore_archive(self, archive: os.PathLike[str], opts: RestoreOptions) -> tuple[Container, Report]:
        return self.services.checkpoints.restore_archive(Path(archive), opts)

    def _restore_stream(self, source: IO[bytes], opts: RestoreOptions) -> tuple[Container, Report]:
        return self.services.checkpoints.restore_stream(source, _stream_name(source), opts)


def _stream_name(source: IO[bytes]) -> Path:
    """What an archive read from a stream is called in messages: `<stdin>`, else `(stream)`."""
    name = getattr(source, "name", None)
    return Path(name if isinstance(name, str) and name else "(stream)")
