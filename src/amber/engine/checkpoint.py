"""Checkpoint: `amber checkpoint`, podman's semantics and format (dump, then export).

Guarantee: a checkpoint that fails leaves the container running (restored from its own images
if the dump had already stopped it) and no file at the export path. When even that restore
fails, the error says so, and the images stay in the container's bundle.

Restoring is in engine.restore, finishing a killed checkpoint in engine.recovery;
CheckpointService offers both operations, as the CLI calls them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from amber.adapters import criu, runtime, task_creds
from amber.adapters import podman_format as fmt
from amber.adapters.run import Result
from amber.adapters.runtime import Runtime
from amber.adapters.state import atomic_write_json
from amber.adapters.tar.formats import Compression, check_level
from amber.engine import faults, ipc_share, recovery, scratch
from amber.engine.containers import ContainerService
from amber.engine.images import ImageService
from amber.engine.restore_options import RestoreOptions
from amber.engine.store import now
from amber.engine.timing import timed
from amber.errors import (
    AmberError,
    CommandError,
    ConflictError,
    NotFoundError,
    PreconditionError,
    UsageError,
    require_root,
)
from amber.layout import Layout, images_dir
from amber.models import Container, Report, Status

if TYPE_CHECKING:  # the export, lazy and restore machinery is imported where it is used
    from amber.adapters import archive_inplace, page_pack
    from amber.adapters.checkpoint_archive import Progress
    from amber.adapters.criu_transfer import PageEndpoint
    from amber.engine.checkpoint_export import Exporter
    from amber.engine.lazy_dump import BackgroundDump, LazySource
    from amber.engine.restore import RestoreService

# The mode of the container's root directory CRIU records at dump, and checks at restore: the
# restoring engine's root must have it. podman's overlay gives every root 0555; containerd's
# snapshotter 0755. amber writes for podman unless told the archive is for containerd.
TARGETS = {"podman": 0o555, "containerd": 0o755}
log = logging.getLogger("amber.checkpoint")
HEAD_SLACK = 32 << 10  # bytes of an archive's head besides the spec's two copies (archive_inplace)
PACKED_DIR = ".pages-packed"  # in the work directory: the page images' zstd frames (page_pack)
DEFAULT_TARGET = "podman"


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
    export: Path | None = None
    export_to: IO[bytes] | None = None  # instead of `export`: a stream (a pipe, a socket), written as made
    compress_level: int | None = None  # with an export; None: the config's, else the compression's default
    compression: Compression | None = None  # only with export; None: zstd
    leave_running: bool = False
    keep: bool = False
    tcp_established: bool = False
    file_locks: bool = False
    ignore_rootfs: bool = False  # only with export
    ignore_volumes: bool = False  # only with export: leave the named volumes' content out
    pre_checkpoint: bool = False
    with_previous: bool = False
    stats: bool = False  # decode CRIU's statistics (costs pycriu's import: about 0.2 s)
    target: str = DEFAULT_TARGET  # the engine meant to restore the archive: podman or containerd (TARGETS)
    progress: Progress | None = None  # told how the export's writing goes (the CLI's bar)
    page_server: PageEndpoint | None = None  # the pages go to this CRIU page server (engine.transfer)
    lazy: LazySource | None = None  # only with export_to: the pages are served from here afterwards (lazy_dump)

    @property
    def archive_compression(self) -> Compression:
        return self.compression or Compression.ZSTD

    @property
    def exporting(self) -> bool:
        return self.export is not None or self.export_to is not None

    @property
    def destination(self) -> str:
        """What the archive goes to, for messages."""
        return f"checkpoint archive {self.export}" if self.export is not None else "the checkpoint archive stream"

    def validate(self, count: int | None = None) -> None:
        """Raises UsageError for options that do not go together, or (`count`) no container."""
        if self.export is not None and self.export_to is not None:
            raise UsageError("an archive goes to a file or to a stream, not both", hint="give one of them")
        if self.export_to is not None and count != 1:
            raise UsageError(
                "a checkpoint written to a stream takes exactly one container",
                hint="checkpoint one container per stream, or export each to a file (--all --export FILE)",
            )
        if self.compress_level is not None and not self.exporting:
            raise UsageError(
                "--compress-level can only be used with --export",
                hint="add --export FILE, or leave out --compress-level",
            )
        check_level(self.archive_compression, self.compress_level)
        if self.compression is not None and not self.exporting:
            raise UsageError(
                "--compress can only be used with --export", hint="add --export FILE, or leave out --compress"
            )
        if self.ignore_rootfs and not self.exporting:
            raise UsageError(
                "--ignore-rootfs can only be used with --export", hint="add --export FILE, or leave out --ignore-rootfs"
            )
        if self.target not in TARGETS:
            raise UsageError(
                f"unknown --target {self.target!r}",
                hint=f"give one of: {', '.join(TARGETS)} (default {DEFAULT_TARGET})",
            )
        if self.ignore_volumes and not self.exporting:
            raise UsageError(
                "--ignore-volumes can only be used with --export",
                hint="add --export FILE, or leave out --ignore-volumes",
            )
        if count == 0:
            raise UsageError("you must provide at least one name or id", hint="or use --all")
        if self.pre_checkpoint and self.with_previous:
            raise UsageError(
                "--with-previous can not be used with --pre-checkpoint",
                hint="take the pre-checkpoint first (--pre-checkpoint), then checkpoint --with-previous",
            )


class CheckpointService:
    def __init__(self, layout: Layout, containers: ContainerService, images: ImageService) -> None:
        self.layout = layout
        self.containers = containers
        self.images = images

    @functools.cached_property
    def restores(self) -> RestoreService:
        from amber.engine.restore import RestoreService

        return RestoreService(self.layout, self.containers, self.images)

    @functools.cached_property
    def exporter(self) -> Exporter:
        from amber.engine.checkpoint_export import Exporter

        return Exporter(self.containers, self.images)

    # ================================ checkpoint ==============================================
    def checkpoint(self, refs: Sequence[str], opts: CheckpointOptions) -> list[Report]:
        """Checkpoint each container of `refs` (with one export, one archive each: FILE-NAME).

        Raises UsageError (options), PreconditionError (not root, no dirty-memory tracking),
        NotFoundError (no such container, no export directory), ConflictError (not running,
        busy), CommandError (CRIU refused), AmberError (the archive could not be written).
        """
        opts.validate(len(refs))
        require_root("checkpointing a container")
        self._check_host(opts)
        reports = []
        for ref in refs:
            c = self.containers.store.get(ref)
            export = opts.export
            if export is not None and len(refs) > 1:
                export = _numbered(export, c.name)
            with self.containers.lock(c):
                c = self.containers.refresh(self.containers.store.get(c.id))
                reports.append(self._checkpoint_locked(c, dataclasses.replace(opts, export=export)))
        return reports

    def checkpoint_all(self, opts: CheckpointOptions) -> list[Report]:
        """Checkpoint every running container; raises as `checkpoint` does."""
        opts.validate()
        running = [c.id for c in self.containers.list()]
        return self.checkpoint(running, opts) if running else []

    # ================================ restore (engine.restore) ================================
    def restore(self, ref: str, opts: RestoreOptions) -> tuple[Container, Report]:
        """Restore a checkpointed container in place: see RestoreService.restore."""
        return self.restores.restore(ref, opts)

    def restore_archive(self, path: Path, opts: RestoreOptions) -> tuple[Container, Report]:
        """A new container from a checkpoint archive: see RestoreService.restore_archive."""
        return self.restores.restore_archive(path, opts)

    def restore_stream(self, source: IO[bytes], path: Path, opts: RestoreOptions) -> tuple[Container, Report]:
        """A new container from an archive read once from a stream: see RestoreService.restore_stream."""
        return self.restores.restore_stream(source, path, opts)

    # ================================ checkpoint internals ====================================
    def _check_host(self, opts: CheckpointOptions) -> None:
        if (opts.pre_checkpoint or opts.with_previous) and not criu.dirty_tracking():
            raise PreconditionError(
                "this host cannot take pre-checkpoints: the kernel does not track dirty memory "
                "(CONFIG_MEM_SOFT_DIRTY is not set; `criu check --feature mem_dirty_track` fails)",
                hint="take a full checkpoint instead (leave out --pre-checkpoint/--with-previous)",
            )
        if opts.exporting:
            self.exporter.level(opts)  # a config level the compression lacks: refused before the dump
        if opts.export is not None:
            parent = opts.export.resolve().parent
            if not parent.is_dir():
                raise NotFoundError(
                    f"cannot export to {opts.export}: directory {parent} does not exist",
                    hint="create the directory first, or choose another path",
                )
            if opts.export.is_dir():
                raise UsageError(
                    f"cannot export to {opts.export}: it is a directory",
                    hint="give a file name, e.g. --export /tmp/ctr.tar.zst",
                )

    def _checkpoint_locked(self, c: Container, opts: CheckpointOptions) -> Report:
        if c.status == Status.PAUSED:  # podman's words
            raise ConflictError(
                f"container {c.name}: cannot checkpoint containers that have been paused",
                hint=f"unpause it first: amber unpause {c.name}",
            )
        if c.auto_remove and not opts.exporting:
            raise ConflictError(
                f"container {c.name} was started with --rm: it can only be checkpointed with --export",
                hint=f"export it: amber checkpoint --export FILE {c.name} (it is removed after the export)",
            )
        if c.status != Status.RUNNING:
            raise ConflictError(
                f"container {c.name} is {c.status}, not running: cannot checkpoint",
                hint=f"start it first (amber start {c.name}), or see amber ps -a",
            )
        ipc_share.check_checkpoint(c, self.containers.config_of, self.containers.store.all(), self.containers.refresh)
        _check_task_uids(c, self.containers.cgroups_path(c))
        rt = self.containers.runtime_for(c)
        runtime.require(rt.info, "checkpoint")
        p = self.containers.paths(c.id)
        exporting = opts.exporting
        leave_running = opts.leave_running or opts.pre_checkpoint
        need = self._memory_of(c)
        offset = self._inplace_offset(c, opts)
        if exporting and opts.archive_compression is Compression.ZSTD and offset is None:
            need *= 2  # the page images, and their frames compressed during the dump (page_pack)
        if exporting and not opts.ignore_rootfs:
            diff_bytes = self.exporter.diff_size(c)  # checked (sparse files, the size limit) in any case
            if leave_running:
                need += diff_bytes  # the diff is written into the work area too (else streamed)
        work = scratch.work_dir(self.layout, f"ckpt-{c.id[:12]}-", need) if exporting else p.bundle
        images = images_dir(work, pre=opts.pre_checkpoint)
        shutil.rmtree(images, ignore_errors=True)
        marker = fmt.PendingCheckpoint(work, opts.export, stops=not leave_running)
        atomic_write_json(p.pending_checkpoint, marker.to_dict())
        reserved = None
        try:
            if offset is not None and opts.export is not None:
                try:
                    from amber.adapters import archive_inplace

                    reserved = archive_inplace.reserve(opts.export, None, offset)
                except OSError as exc:  # the archive's own write reports it, after the dump
                    log.debug("checkpoint: no archive file made before the dump: %s", exc)
            return self._dump_and_export(c, rt, work, images, leave_running, opts, reserved)
        finally:
            if reserved is not None:
                reserved.discard()
            with contextlib.suppress(FileNotFoundError):
                p.pending_checkpoint.unlink()

    def _inplace_offset(self, c: Container, opts: CheckpointOptions) -> int | None:
        """Where the big page image goes in the archive file, made before the dump, when it can
        go there as CRIU writes it (archive_inplace): an export of a full dump to a file,
        uncompressed or zstd. Else None (a stream, gzip, a page server, a lazy or pre-dump)."""
        if opts.export is None or opts.export_to is not None or not opts.exporting:
            return None
        if opts.archive_compression not in (Compression.NONE, Compression.ZSTD):
            return None
        if opts.page_server is not None or opts.lazy is not None or opts.pre_checkpoint:
            return None
        spec = self.containers.paths(c.id).config_json
        # The head: spec.dump, config.dump (smaller than the spec), the manifest, status.dump.
        from amber.adapters import archive_inplace

        return archive_inplace.data_offset(2 * spec.stat().st_size + HEAD_SLACK)

    def _dump_and_export(
        self,
        c: Container,
        rt: Runtime,
        work: Path,
        images: Path,
        leave_running: bool,
        opts: CheckpointOptions,
        reserved: archive_inplace.Reserved | None,
    ) -> Report:
        p = self.containers.paths(c.id)
        exporting = opts.exporting
        stopped = not leave_running
        # -R with an export: the container is frozen from before the dump until its rootfs diff is
        # taken, so the diff holds the files as CRIU recorded them (sizes, contents).
        with self._frozen(c, rt, freeze=exporting and leave_running):
            started = time.monotonic()
            lazy, packer = self._dump(c, rt, work, images, leave_running, opts, reserved)
            packed = packer.finish() if packer is not None else {}
            placed = packer.placed if packer is not None else None
            runtime_us = int((time.monotonic() - started) * 1e6)
            faults.point("after-dump")
            if opts.tcp_established:  # before the teardown (netavark's) forgets them
                from amber.engine import attachments as attach

                attach.record_connections(self.containers.attachments(c), p.network_status, p.conntrack)
            criu.record_cpuinfo(images)  # lets the restoring host check its CPU first (amber archive check)
            stats = criu.read_stats(work / fmt.STATS_DUMP, "dump") if opts.stats else {}
            try:
                # A stopped container's files stay as they are: its diff is streamed into the
                # archive. A running one's is copied now, while it is frozen.
                diff = self.exporter.rootfs_diff(c, work, opts, streamed=stopped) if exporting else ([], 0)
            except BaseException as exc:
                self._export_failed(c, work, opts, exc, stopped=stopped, lazy=lazy)
                raise
        try:
            if exporting:
                with timed("export"):
                    self.exporter.write(c, work, opts, *diff, packed=packed, reserved=reserved, placed=placed)
        except BaseException as exc:
            self._export_failed(c, work, opts, exc, stopped=stopped, lazy=lazy)
            raise
        faults.point("after-archive")
        if lazy is not None and opts.lazy is not None:
            from amber.engine import lazy_dump

            lazy_dump.serve(self.containers, c, work, lazy, opts.lazy, tcp_established=opts.tcp_established)
        if exporting:
            if opts.keep and stopped:  # podman's --keep: the images stay, `amber restore NAME` works
                shutil.rmtree(p.checkpoint, ignore_errors=True)
                shutil.move(str(images), p.checkpoint)
            scratch.discard(work)
        if stopped:
            self.containers.cleanup(c)
            if exporting and not opts.keep:
                shutil.rmtree(p.checkpoint, ignore_errors=True)
            c = dataclasses.replace(c, status=Status.CHECKPOINTED, pid=0, checkpointed=now())
        else:
            c = dataclasses.replace(c, checkpointed=now())
        self.containers.store.save(c)
        if stopped and exporting and c.auto_remove:  # podman: a --rm container goes after its export
            self.containers.remove_locked(c, force=False)
        return Report(c.id, c.name, runtime_us, stats, str(opts.export) if opts.export else None)

    def _export_failed(
        self,
        c: Container,
        work: Path,
        opts: CheckpointOptions,
        exc: BaseException,
        *,
        stopped: bool,
        lazy: BackgroundDump | None = None,
    ) -> None:
        """The export failed (`exc`): bring the container back if the dump stopped it (a lazy
        dump: call it off, CRIU resumes it), then say what happened. Raises AmberError for a
        write error or a failed revival; returns (for the caller to re-raise `exc`) otherwise."""
        revive_error: BaseException | None = None
        if lazy is not None:
            from amber.engine import lazy_dump

            lazy_dump.call_off(self.containers, c, work, lazy, tcp_established=opts.tcp_established)
            stopped = False
        if stopped:
            try:
                recovery.revive(self.containers, c, work)
            except (AmberError, OSError) as failure:
                revive_error = failure
        if opts.exporting:
            scratch.discard(work)
        why = exc.strerror if isinstance(exc, OSError) else str(exc) or type(exc).__name__
        if revive_error is not None:
            images = self.containers.paths(c.id).checkpoint
            kept = (images / fmt.INVENTORY_IMG).is_file()
            if kept:
                self.containers.store.save(
                    dataclasses.replace(c, status=Status.CHECKPOINTED, pid=0, checkpointed=now())
                )
            raise AmberError(
                f"could not write {opts.destination}: {why}{_incomplete(opts)}; and container {c.name}, which the "
                f"dump had stopped, could not be restored from its images: {revive_error}",
                hint=(f"its images are kept in {images}: amber restore {c.name} tries again" if kept else None)
                or f"the container is stopped; start it again: amber start {c.name}",
                details=revive_error.details if isinstance(revive_error, AmberError) else (),
            ) from revive_error
        if isinstance(exc, OSError) or (opts.export_to is not None and _is_zstd_error(exc)):
            raise AmberError(
                f"could not write {opts.destination}: {why}{_incomplete(opts)}",
                hint=(
                    "check the free space and permissions of the target directory"
                    if opts.export_to is None
                    else "the reader of the stream stopped or failed: discard what it received"
                )
                + f"; container {c.name} is still running",
            ) from exc

    def _dump(
        self,
        c: Container,
        rt: Runtime,
        work: Path,
        images: Path,
        leave_running: bool,
        opts: CheckpointOptions,
        reserved: archive_inplace.Reserved | None,
    ) -> tuple[BackgroundDump | None, page_pack.PagePacker | None]:
        """The runtime's checkpoint (CRIU's dump); with `opts.lazy`, it goes on in the
        background once CRIU serves the pages (returned first). With a zstd export, the page
        images are compressed while CRIU writes them, and with `reserved` the big one goes into
        the archive file as CRIU writes it (page_pack): the packer, whose thread has ended. A dump
        that fails, times out or is killed leaves the container thawed; raises CommandError
        naming CRIU."""
        exporting = opts.exporting
        p = self.containers.paths(c.id)
        packer = self._packer(work, images, opts, reserved)
        try:
            # An archive records the root mode the engine meant to restore it expects (TARGETS);
            # a checkpoint kept in amber's state is restored here, on this root, as it is.
            root_mode = _root_mode(p.merged, TARGETS[opts.target]) if exporting else contextlib.nullcontext()
            pages: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
            if packer is not None:
                from amber.adapters import page_pack

                pages = page_pack.packing(packer)
            with timed("runtime checkpoint (CRIU dump)"), root_mode, pages:

                def checkpoint(status_fd: int | None = None) -> Result:
                    return rt.checkpoint(
                        c.id,
                        image_path=images,
                        work_path=work,
                        leave_running=leave_running,
                        tcp_established=opts.tcp_established,
                        file_locks=opts.file_locks,
                        pre_dump=opts.pre_checkpoint,
                        parent_path=f"../{fmt.PRE_CHECKPOINT_DIR}" if opts.with_previous else None,
                        page_server=opts.lazy.endpoint if opts.lazy else opts.page_server,
                        lazy=opts.lazy is not None,
                        status_fd=status_fd,
                    )

                if opts.lazy is None:
                    res = checkpoint()
                else:
                    from amber.engine.lazy_dump import BackgroundDump

                    lazy = BackgroundDump(
                        checkpoint, opts.lazy.endpoint, status_fd=rt.info.kind == "runc", abort=opts.lazy.abort
                    )
                    ended = lazy.ready()
                    if ended is None:
                        return lazy, None
                    res = ended
        except CommandError as exc:  # timed out: the runtime was killed, CRIU may have been left
            recovery.thaw(self.containers, c)
            res = Result(exc.argv, exc.returncode, exc.stdout, exc.stderr)
            self._fail_dump(c, work, exporting, res, timeout=exc.timeout)
        if res.returncode != 0:
            recovery.thaw(self.containers, c)
            self._fail_dump(c, work, exporting, res)
        return None, packer

    def _packer(
        self, work: Path, images: Path, opts: CheckpointOptions, reserved: archive_inplace.Reserved | None
    ) -> page_pack.PagePacker | None:
        """A packer of the page images for a zstd export of a full dump (the pages are in `work`),
        or for one to a reserved archive file (the big image goes into it)."""
        slot = reserved.slot if reserved is not None else None
        if opts.page_server is not None or opts.lazy is not None or opts.pre_checkpoint or not opts.exporting:
            return None
        if opts.archive_compression is Compression.ZSTD:
            from amber.adapters import page_pack

            return page_pack.PagePacker(images, work / PACKED_DIR, self.exporter.level(opts), slot=slot)
        if slot is not None and opts.archive_compression is Compression.NONE:
            from amber.adapters import page_pack

            return page_pack.PagePacker(images, work / PACKED_DIR, None, compressed=False, slot=slot)
        return None

    @contextlib.contextmanager
    def _frozen(self, c: Container, rt: Runtime, *, freeze: bool) -> Iterator[None]:
        """With `freeze`, the container is paused inside the block and thawed after it, always."""
        if not freeze:
            yield
            return
        rt.pause(c.id, c.name)
        try:
            yield
        finally:
            recovery.thaw(self.containers, c)

    def _memory_of(self, c: Container) -> int:
        path = self.containers.cgroups_path(c)
        return scratch.container_memory(path) if path else 0

    def _fail_dump(
        self, c: Container, work: Path, exporting: bool, res: Result, *, timeout: float | None = None
    ) -> None:
        """CRIU refused: keep its log where the user can read it, leave the container as it was."""
        kept = self.containers.paths(c.id).dump_log
        log = work / fmt.DUMP_LOG
        if log.is_file() and log != kept:
            shutil.copyfile(log, kept)
        lines = criu.log_errors(kept) if kept.is_file() else []
        if exporting:
            scratch.discard(work)
        # CRIU resumes the tasks when a dump fails; if the container died anyway, say so.
        running = _running(self.containers, c)
        raise CommandError(
            res.argv,
            res.returncode,
            res.stdout,
            "\n".join([*res.stderr.splitlines()[-3:], *lines]),
            what=f"CRIU could not checkpoint container {c.name}"
            + (f" ({c.runtime} checkpoint timed out after {timeout:g} s)" if timeout is not None else ""),
            hint=(f"container {c.name} is still running; " if running else "") + f"the whole CRIU log is in {kept}",
            log_path=kept,
            timeout=timeout,
        )


@contextlib.contextmanager
def _root_mode(root: Path, mode: int) -> Iterator[None]:
    """The container's root directory in `mode` while CRIU dumps (it records it), as it was after."""
    try:
        before = stat.S_IMODE(os.stat(root).st_mode)
    except OSError:  # no mounted root to adjust (a test runtime): CRIU records what there is
        yield
        return
    os.chmod(root, mode)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # unmounted when the dump stopped the container
            os.chmod(root, before)


def _is_zstd_error(exc: BaseException) -> bool:
    """Did zstd fail writing a stream? (Imported here: a local checkpoint never loads zstd.)"""
    import zstandard

    return isinstance(exc, zstandard.ZstdError)


def _incomplete(opts: CheckpointOptions) -> str:
    return "; the stream is incomplete" if opts.export_to is not None else ""


def _running(containers: ContainerService, c: Container) -> bool:
    st = containers.runtime_state(c)
    return st is not None and st.running


def _numbered(export: Path, name: str) -> Path:
    """-a with --export: one archive per container, never one file overwritten by all."""
    base = export.name
    for suffix in (".tar.zst", ".tar.gz", ".tar"):
        if base.endswith(suffix):
            return export.with_name(f"{base[: -len(suffix)]}-{name}{suffix}")
    return export.with_name(f"{base}-{name}")


__all__ = ["CheckpointOptions", "CheckpointService", "Report", "RestoreOptions"]


def _check_task_uids(c: Container, cgroups_path: str) -> None:
    """Raises PreconditionError, before anything is frozen, when CRIU would fail deep in its dump
    (`Can't get rlimit: Operation not permitted`): a task runs as another uid than 0 and amber's
    root lacks CAP_SYS_RESOURCE (some hosts drop it from root)."""
    if task_creds.effective_caps() & (1 << task_creds.CAP_SYS_RESOURCE):
        return
    for pid in task_creds.cgroup_pids(cgroups_path):
        ids = task_creds.uids(pid)
        if any(ids):
            raise PreconditionError(
                f"cannot checkpoint container {c.name}: its process {pid} runs as uid {max(ids)}, and amber "
                "runs without CAP_SYS_RESOURCE, which CRIU needs to dump a process of another user",
                hint="run the container's processes as root (no -u), or run amber where root has "
                "CAP_SYS_RESOURCE (grep CapEff /proc/self/status: bit 24)",
            )
