"""Restore: a checkpointed container in place (`amber restore NAME`), or a new container from a
checkpoint archive (`amber restore --import FILE`), podman's semantics and format.

Guarantee: a restore that fails leaves no container, mount or process behind and the name free.
A restore from an archive extracts nothing before every check has passed.

This module does not import the container service: it works on anything shaped like it
(`ContainerOps`), so the container service can use it (through recovery) without a cycle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from amber.adapters import conmon, criu, netlock
from amber.adapters import podman_format as fmt
from amber.adapters.runtime import Runtime, RuntimeInfo
from amber.adapters.state import atomic_write_json
from amber.config import Settings
from amber.engine import faults, restore_verify, scratch
from amber.engine.images import ImageService
from amber.engine.restore_options import RestoreOptions, criu_config_file
from amber.engine.runtime_rule import select_runtime
from amber.engine.spec import AUTOREMOVE_ANNOTATION
from amber.engine.store import ContainerStore, now, validate_name
from amber.engine.timing import timed
from amber.engine.volumes import VolumeService
from amber.errors import (
    AmberError,
    ArchiveError,
    ConflictError,
    NotFoundError,
    PreconditionError,
    UsageError,
    amended,
    require_root,
)
from amber.layout import ContainerLayout, Layout, images_dir
from amber.models import Container, Image, Report, Status

if TYPE_CHECKING:
    from amber.adapters import checkpoint_archive as archive
    from amber.adapters.tar.extract import Divert
    from amber.engine.attachments import Attachments
    from amber.engine.networks import NetworkService

# An in-place restore (`amber restore NAME`, and recovery's) imports nothing of the archive
# code: the archive format, the tar engine, the image checks and the rootfs diff are imported
# in the methods that restore an archive; the network code (attachments, networks, netavark)
# where a restore has a network or recorded connections to deal with.

# (work directory, most bytes, diverts): unpacks the archive there, handing the members named in
# diverts to their handler instead (extract_archive's `divert`, one that reads a file may); may
# return {member: Span} for the members it left in the archive (extract_archive's `spans`).
Unpacker = Callable[[Path, int, Mapping[str, "Divert"]], object]


class ContainerOps(Protocol):
    """What restoring needs of the container service (engine.containers.ContainerService)."""

    @property
    def layout(self) -> Layout: ...
    @property
    def store(self) -> ContainerStore: ...
    @property
    def images(self) -> ImageService: ...
    @property
    def settings(self) -> Settings: ...
    def paths(self, cid: str) -> ContainerLayout: ...
    def runtime_for(self, c: Container) -> Runtime: ...
    def runtime_of(self, info: RuntimeInfo) -> Runtime: ...
    def runtime_state(self, c: Container) -> fmt.RuntimeState | None: ...
    def cleanup(self, c: Container) -> None: ...
    def cgroups_path(self, c: Container) -> str: ...
    def refresh(self, c: Container) -> Container: ...
    def prepare_root(
        self, c: Container, *, image_layers: Sequence[Path], keep_address: tuple[bool, bool] | None = None
    ) -> None: ...
    def monitor_spec(self, c: Container) -> conmon.MonitorSpec: ...
    def lock(self, c: Container) -> contextlib.AbstractContextManager[None]: ...
    def lock_names(self) -> contextlib.AbstractContextManager[None]: ...
    def attachments(self, c: Container) -> Attachments: ...
    @property
    def networks(self) -> NetworkService: ...
    @property
    def volumes(self) -> VolumeService: ...


def restore_in_place(
    containers: ContainerOps, c: Container, info: RuntimeInfo, opts: RestoreOptions, images: Path | None = None
) -> tuple[Container, Report]:
    """Restore `c` from its checkpoint images (default: the ones kept in its bundle).

    The caller holds the container's lock. Raises NotFoundError when there are no complete
    images, the runtime's AmberError (with CRIU's telling lines) when the restore fails, having
    stopped and cleaned up what it started.
    """
    p = containers.paths(c.id)
    images = images or p.checkpoint
    if not (images / fmt.INVENTORY_IMG).is_file():
        raise NotFoundError(
            f"container {c.name} has no complete checkpoint to restore",
            hint=f"checkpoint it again: amber checkpoint {c.name}",
        )
    image = containers.images.get(c.image_id)
    try:
        # The new namespace is wired (same IP and MAC) before the runtime restores into it.
        containers.prepare_root(c, image_layers=containers.images.layer_dirs(image), keep_address=opts.keep_address)
        # The modes CRIU recorded for the root and working directories, which it checks: an
        # archive's (written for another engine's root) and this container's own alike.
        _restore_dir_modes(p.merged, images)
        locked = opts.tcp_established and containers.attachments(c).network is not None
        if locked:  # CRIU's lock in the new namespace, the NAT'd connections' conntrack entries
            from amber.engine import attachments as attach

            ips = {lease.ip for lease in containers.networks.attachments(c.id).values()}
            netlock.insert(e for e in attach.recorded_connections(p.conntrack) if e.involves(ips))
            netlock.lock(p.netns)
        if opts.lazy_pages is not None:  # conmon gives the runtime the bundle as CRIU's work path
            opts.lazy_pages(images, p.bundle)
        started = time.monotonic()
        with timed("runtime restore (CRIU)"):
            pid = conmon.start_monitor(
                containers.runtime_of(info),
                containers.monitor_spec(c),
                restore_from=images,
                runtime_opts=opts.runtime_opts(info),
                criu_config=criu_config_file(p, opts.criu_config(info)),
            )
        runtime_us = int((time.monotonic() - started) * 1e6)
        if locked:
            netlock.unlock(p.netns)
    except AmberError as exc:
        conmon.stop_monitor(containers.monitor_spec(c))
        containers.cleanup(c)
        raise _restore_failure(exc, p.restore_log) from exc
    _verify(containers, c, info, pid)
    stats = criu.read_stats(p.stats_restore, "restore") if opts.stats else {}
    if opts.keep and images != p.checkpoint:
        shutil.rmtree(p.checkpoint, ignore_errors=True)
        shutil.move(str(images), p.checkpoint)
    elif not opts.keep:
        shutil.rmtree(images, ignore_errors=True)
    c = dataclasses.replace(
        c, status=Status.RUNNING, pid=pid, restored=True, started=now(), exit_code=None, finished=""
    )
    containers.store.save(c)
    return c, Report(c.id, c.name, runtime_us, stats)


def _verify(containers: ContainerOps, c: Container, info: RuntimeInfo, pid: int) -> None:
    """The runtime said the restore worked: check the init is alive and in its own cgroup. If not,
    stop and clean up what was started and raise AmberError saying what was seen."""
    st = containers.runtime_state(c)
    seen = restore_verify.inspect_init(
        pid, containers.cgroups_path(c), runtime_status=st.status if st is not None else None
    )
    if seen.problem is None:
        return
    with contextlib.suppress(AmberError):
        containers.runtime_of(info).kill(c.id, "KILL", all_processes=True)
    conmon.stop_monitor(containers.monitor_spec(c))
    with contextlib.suppress(AmberError, OSError):
        containers.cleanup(c)
    raise AmberError(
        f"{info.kind} reported container {c.name} restored, but {seen.problem}",
        hint="nothing of the restored container is left running; see the restore log "
        f"({containers.paths(c.id).restore_log}), then try again",
        details=seen.details,
    )


def _restore_failure(exc: AmberError, log: Path) -> AmberError:
    """The runtime's error with the telling lines of CRIU's restore log."""
    lines = criu.log_errors(log)
    return amended(
        exc,
        hint=exc.hint or "see the CRIU lines above; the archive is unchanged and can be restored again",
        details=[*lines, f"restore log: {log}"] if lines else (),
    )


class RestoreService:
    def __init__(self, layout: Layout, containers: ContainerOps, images: ImageService) -> None:
        self.layout = layout
        self.containers = containers
        self.images = images

    def restore(self, ref: str, opts: RestoreOptions) -> tuple[Container, Report]:
        """Bring a checkpointed container back from the images kept in its bundle.

        Raises UsageError (options), PreconditionError (not root), NotFoundError (no such
        container, no images), ConflictError (not checkpointed, busy), RuntimeMismatchError.
        """
        opts.validate(archive=False)
        require_root("restoring a container")
        c = self.containers.store.get(ref)
        with self.containers.lock(c):
            c = self.containers.refresh(self.containers.store.get(c.id))
            # podman restores a container stopped after `checkpoint --leave-running` from the
            # checkpoint that kept running left in its bundle
            kept = (
                c.status == Status.EXITED
                and c.checkpointed > c.started
                and (self.containers.paths(c.id).checkpoint / fmt.INVENTORY_IMG).is_file()
            )
            if c.status != Status.CHECKPOINTED and not kept:
                raise ConflictError(
                    f"container {c.name} is {c.status}, not checkpointed: nothing to restore",
                    hint=f"checkpoint it first: amber checkpoint {c.name}",
                )
            info = (
                select_runtime(c.runtime, opts.runtime or None, f"of container {c.name}")
                if opts.runtime
                else self.containers.runtime_for(c).info
            )
            if opts.ignore_static_ip or opts.ignore_static_mac:
                from amber.engine import attachments as attach

                path = self.containers.paths(c.id).attachments
                att = self.containers.attachments(c)
                attach.save(path, attach.without_static(att, ip=opts.ignore_static_ip, mac=opts.ignore_static_mac))
            return restore_in_place(self.containers, c, info, opts)

    def restore_archive(self, path: Path, opts: RestoreOptions) -> tuple[Container, Report]:
        """A new container from an archive. Nothing is extracted before every check has passed.

        Raises UsageError (options), PreconditionError (not root, this host cannot restore it),
        NotFoundError (no archive, no image), ArchiveError (damaged or hostile archive),
        RuntimeMismatchError, ConflictError (the name is taken), or the restore's own failure.
        """
        opts.validate(archive=True)
        require_root("restoring a container")
        from amber.adapters import checkpoint_archive as archive

        head = archive.read_head(path)

        def unpack_into(unpack: Path, limit: int, divert: Mapping[str, Divert]) -> dict[str, archive.Span | None]:
            skip = {fmt.CONFIG_DUMP, fmt.SPEC_DUMP, fmt.AMBER_MANIFEST}
            # A plain archive's rootfs diff is applied from where it lies in the archive, not
            # copied into the work area first (2 GiB: one write of 2 GiB fewer).
            spans: dict[str, archive.Span | None] = {fmt.ROOTFS_DIFF: None}
            archive.extract_archive(
                path,
                unpack,
                skip=lambda n: n in skip,
                max_total_size=limit,
                progress=opts.progress,
                spans=spans,
                divert=divert,
            )
            return spans

        return self._restore_from(head, unpack_into, opts)

    def restore_stream(self, source: IO[bytes], path: Path, opts: RestoreOptions) -> tuple[Container, Report]:
        """restore_archive from a stream read once (stdin, a socket), named `path` in messages.

        The same checks, in the same order, as from a file: members before the metadata (podman's
        order) are spooled, bounded (checkpoint_stream). Raises what restore_archive raises, and
        UsageError when `source` is a terminal. A stream cut short leaves nothing behind."""
        opts.validate(archive=True)
        if _is_terminal(source):
            raise UsageError(
                "refusing to read a checkpoint archive from a terminal",
                hint="pipe one in (amber restore --import - < ARCHIVE), or give its path to --import",
            )
        require_root("restoring a container")
        self.layout.ensure()
        self.layout.tmp.mkdir(parents=True, exist_ok=True)
        from amber.adapters.checkpoint_stream import ArchiveStream

        spool = Path(tempfile.mkdtemp(prefix="restore-spool-", dir=self.layout.tmp))
        limit = self.containers.settings.max_unpacked_size
        try:
            with ArchiveStream(source, path, spool, max_total_size=limit) as stream:
                assert stream.head is not None
                return self._restore_from(
                    stream.head, lambda unpack, most, _divert: stream.extract_rest(unpack, max_total_size=most), opts
                )
        finally:
            scratch.discard(spool)

    def _restore_from(
        self, head: archive.ArchiveHead, unpack_into: Unpacker, opts: RestoreOptions
    ) -> tuple[Container, Report]:
        """restore_archive once the head is read: checks, the record, then `unpack_into`."""
        from amber.engine import attachments as attach
        from amber.engine import privilege_checks, restore_net

        path = head.path
        config = head.config_dump
        info = select_runtime(config.runtime or "", opts.runtime, str(path))
        image = self._archive_image(config, path)
        name = validate_name(opts.name) if opts.name else _archive_name(config, path)
        fmt.check_spec_shape(head.spec, path)
        privilege_checks.check_spec(head.spec, str(path), trust=opts.trust_archive)  # before any work
        att = restore_net.plan(self.containers.networks, self.containers.volumes, head, opts)
        self.layout.ensure()
        with contextlib.ExitStack() as held:
            with self.containers.lock_names():
                c = self._new_restored_record(path, head, info, image, name, opts)
                # Locked before the record appears: nobody can take it for an interrupted restore.
                held.enter_context(self.containers.lock(c))
                declared = scratch.declared_size(head.amber_manifest)
                unpack = scratch.work_dir(self.layout, f"restore-{c.id[:12]}-", declared)
                marker = self.containers.paths(c.id).pending_restore
                atomic_write_json(marker, fmt.PendingRestore(path, unpack).to_dict())
                attach.save(self.containers.paths(c.id).attachments, att)
                self.containers.store.save(c)
            try:
                restored = self._unpack_and_restore(c, head, info, opts, unpack, att, unpack_into)
                marker.unlink(missing_ok=True)
                return restored
            except BaseException:
                with contextlib.suppress(Exception):
                    self.containers.cleanup(c)
                for volume in att.named_volumes():
                    self.containers.volumes.release(volume.name, c.id)
                self.containers.store.delete(c.id)
                raise
            finally:
                scratch.discard(unpack)

    def _new_restored_record(
        self, path: Path, head: archive.ArchiveHead, info: RuntimeInfo, image: Image, name: str, opts: RestoreOptions
    ) -> Container:
        """The record of the container an archive becomes (the caller holds the names lock)."""
        from amber.engine.archive_meta import kept_settings

        config = head.config_dump
        try:
            self.containers.store.check_name_free(name)
        except ConflictError as exc:
            hint = f"restore it under another name with --name, or remove the container: amber rm -f {name}"
            raise amended(exc, hint=hint) from exc
        old_id = config.id or ""
        keep_id = not opts.name and _is_hex_id(old_id) and self.containers.store.find(old_id) is None
        cid = old_id if keep_id else self.containers.store.new_id()
        self.containers.paths(cid).bundle.mkdir(parents=True, exist_ok=True)
        return Container(
            id=cid,
            name=name,
            image_id=image.id,
            image_name=image.name,
            runtime=info.kind,
            runtime_path=info.path,
            command=fmt.spec_command(head.spec),
            created=config.created_time or now(),
            status=Status.CREATED,
            restored_from=str(path),
            auto_remove=fmt.spec_annotations(head.spec).get(AUTOREMOVE_ANNOTATION) == "TRUE",  # podman keeps --rm
            **kept_settings(config),  # labels, stop signal and timeout, as podman's restore reads them
        )

    def _unpack_and_restore(
        self,
        c: Container,
        head: archive.ArchiveHead,
        info: RuntimeInfo,
        opts: RestoreOptions,
        unpack: Path,
        att: Attachments,
        unpack_into: Unpacker,
    ) -> tuple[Container, Report]:
        """Unpack into `unpack` (a scratch dir: tmpfs when the images fit), then restore from it."""
        from amber.adapters import criu_images, criu_memory
        from amber.engine import archive_checks, privilege_checks, restore_net
        from amber.engine import attachments as attach
        from amber.engine.restore_root import RootSteps

        p = self.containers.paths(c.id)
        # At most max_unpacked_size; in memory (tmpfs), at most what amber.manifest declares.
        limit = self.containers.settings.max_unpacked_size
        if scratch.in_memory(self.layout, unpack):
            limit = min(limit, scratch.declared_size(head.amber_manifest) + scratch.SLACK)
        image = self.images.get(c.image_id)
        root = RootSteps(self.containers, c, head, opts, unpack, self.images.layer_dirs(image))
        warming = criu_images.preload()  # imported while the archive unpacks, for the checks below
        try:
            with timed("extract archive"):
                unpacked = unpack_into(unpack, limit, root.diverts())
        finally:
            warming.join()
        faults.point("after-extract")
        images = images_dir(unpack)
        if opts.complete_images is not None:
            opts.complete_images(images)
        # CRIU can spin for ever on images it cannot parse: decode the process tree first, and
        # check every task's credentials and seccomp state against what the container may hold.
        decoded = criu_images.ImageDir(images, str(head.path))
        privilege_checks.check_images(decoded, head.spec, trust=opts.trust_archive)
        criu_memory.check_pages(decoded, (task.pid for task in criu_images.read_processes(decoded)))
        for result in (archive_checks.check_criu(head, unpack), archive_checks.check_cpu(unpack)):
            if result.failed:  # the same checks as `amber archive check`, before CRIU is asked
                raise PreconditionError(
                    f"checkpoint archive {head.path} cannot be restored here: {result.reason}", hint=result.hint or None
                )
        root.finish(unpacked)  # mounted, deletions, the rootfs diff (unless applied as it was read)
        provided = restore_net.import_volumes(self.containers.volumes, att, unpack, c.id, opts)
        resolv = attach.resolv_conf(self.containers.networks, att, p.resolv_conf)
        if resolv is not None:  # the archive's /etc/resolv.conf bind names this network's DNS
            provided[attach.RESOLV_CONF] = resolv
        spec = privilege_checks.restore_spec(
            head.spec,
            rootfs=p.merged,
            netns=p.netns,
            root=self.layout.root,
            bundle=p.bundle,
            cid=c.id,
            source=str(head.path),
            trust=opts.trust_archive,
            provided=provided,
        )
        self._restore_devshm(spec, unpack, p)
        atomic_write_json(p.config_json, spec)
        for kept in (fmt.CTR_LOG, fmt.STATS_DUMP):
            if (unpack / kept).is_file():
                shutil.move(str(unpack / kept), p.bundle / kept)
        return restore_in_place(self.containers, c, info, opts, images=images)

    def _restore_devshm(self, spec: dict[str, Any], unpack: Path, p: ContainerLayout) -> None:
        """Unpack devshm-checkpoint.tar into the /dev/shm source amber made in the bundle."""
        from amber.adapters.tar.extract import extract
        from amber.adapters.tar.policy import Policy

        tar = unpack / fmt.DEVSHM
        if not tar.is_file():
            return
        for mount in spec.get("mounts", []):
            source = Path(str(mount.get("source", "")))
            if mount.get("destination") == "/dev/shm" and source.parent == p.restore_mounts:
                with tar.open("rb") as f:
                    extract(f, source, Policy(keep_owner=True), archive=f"{fmt.DEVSHM} in {unpack}")

    def _archive_image(self, config: fmt.ConfigDump, path: Path) -> Image:
        from amber.engine import archive_checks

        image = archive_checks.find_image(self.images, config)
        if image is not None:
            return image
        name, image_id = config.image_refs
        raise NotFoundError(
            f"checkpoint archive {path} needs image {name or image_id or '(none recorded)'}, which is not present",
            hint=f"import it first: amber image import ROOTFS.tar {name or 'NAME'}",
        )


def _restore_dir_modes(root: Path, images: Path) -> None:
    """Give the root and working directories the modes CRIU recorded (it checks them).

    The names come from the archive: each is walked inside `root` without following symlinks or
    `..`, and changed through its own file descriptor, so nothing outside the root is touched.
    """
    for name, mode in criu.recorded_dir_modes(images).items():
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if not stat.S_ISDIR(mode) or ".." in parts:
            continue
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nxt
            if stat.S_IMODE(os.fstat(fd).st_mode) != stat.S_IMODE(mode):
                os.fchmod(fd, stat.S_IMODE(mode))
        except OSError:
            continue  # missing, or a symlink on the way: CRIU will say what it misses
        finally:
            os.close(fd)


def _archive_name(config: fmt.ConfigDump, path: Path) -> str:
    """The container name the archive records. Raises ArchiveError when there is none usable."""
    name = config.name
    if not name:
        raise ArchiveError(f"checkpoint archive {path} records no usable container name", hint="give one with --name")
    try:
        return validate_name(name)
    except UsageError as exc:
        raise ArchiveError(
            f"checkpoint archive {path} records an invalid container name {name!r}", hint="give another with --name"
        ) from exc


def _is_terminal(source: IO[bytes]) -> bool:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return bool(source.isatty())
    return False


def _is_hex_id(value: str) -> bool:
    return len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)


__all__ = ["ContainerOps", "RestoreOptions", "RestoreService", "restore_in_place"]
