"""Checkpoint and restore: `amber checkpoint` and `amber restore`, podman's semantics and format.

Guarantees: a checkpoint that fails leaves the container running (restored from its own images
if the dump had already stopped it) and no file at the export path; a restore that fails leaves
no container, mount or process behind and the name free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amber import __version__
from amber.adapters import checkpoint_archive as archive
from amber.adapters import conmon, criu, criu_images, rootfs_diff, runtime, safe_tar
from amber.adapters.runtime import Runtime, RuntimeInfo
from amber.adapters.state import atomic_write_json
from amber.config import Layout
from amber.engine import archive_checks, confinement, faults, scratch
from amber.engine.containers import ContainerService, now
from amber.engine.images import ImageService
from amber.engine.runtime_rule import select_runtime
from amber.engine.store import validate_name
from amber.engine.timing import timed
from amber.errors import (
    AmberError,
    ArchiveError,
    CommandError,
    ConflictError,
    NotFoundError,
    PreconditionError,
    UsageError,
    require_root,
)
from amber.models import Container, Image, Status


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
    export: Path | None = None
    compression: archive.Compression = archive.Compression.ZSTD
    leave_running: bool = False
    keep: bool = False
    tcp_established: bool = False
    file_locks: bool = False
    ignore_rootfs: bool = False
    pre_checkpoint: bool = False
    with_previous: bool = False
    stats: bool = False  # decode CRIU's statistics (costs pycriu's import: about 0.2 s)


@dataclasses.dataclass(frozen=True)
class RestoreOptions:
    import_path: Path | None = None
    name: str | None = None
    runtime: str | None = None
    keep: bool = False
    tcp_established: bool = False
    tcp_close: bool = False
    file_locks: bool = False
    ignore_rootfs: bool = False
    stats: bool = False
    trust_archive: bool = False  # obey the archive's privileges (spec.dump, CRIU credentials)


@dataclasses.dataclass(frozen=True)
class Report:
    """One container's checkpoint or restore: what podman's --print-stats reports."""

    id: str
    name: str
    runtime_duration_us: int
    criu_statistics: dict[str, int]
    export: str | None = None


PENDING_CHECKPOINT = "checkpoint.pending"
PENDING_RESTORE = "restore.pending"


class CheckpointService:
    def __init__(self, layout: Layout, containers: ContainerService, images: ImageService) -> None:
        self.layout = layout
        self.containers = containers
        self.images = images

    # ================================ checkpoint ==============================================
    def checkpoint(self, refs: Sequence[str], opts: CheckpointOptions) -> list[Report]:
        require_root("checkpointing a container")
        self._validate(opts, len(refs))
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
        running = [c.id for c in self.containers.list()]
        return self.checkpoint(running, opts) if running else []

    def _validate(self, opts: CheckpointOptions, count: int) -> None:
        if opts.pre_checkpoint and opts.with_previous:
            raise UsageError("--with-previous can not be used with --pre-checkpoint")
        if (opts.pre_checkpoint or opts.with_previous) and not criu.dirty_tracking():
            raise PreconditionError(
                "this host cannot take pre-checkpoints: the kernel does not track dirty memory "
                "(CONFIG_MEM_SOFT_DIRTY is not set; `criu check --feature mem_dirty_track` fails)",
                hint="take a full checkpoint instead (leave out --pre-checkpoint/--with-previous)",
            )
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
        if c.status != Status.RUNNING:
            raise ConflictError(
                f"container {c.name} is {c.status}, not running: cannot checkpoint",
                hint=f"start it first (amber start {c.name}), or see amber ps -a",
            )
        rt = self.containers.runtime_for(c)
        runtime.require(rt.info, "checkpoint")
        p = self.containers.paths(c.id)
        exporting = opts.export is not None
        work = scratch.work_dir(self.layout, f"ckpt-{c.id[:12]}-", self._memory_of(c)) if exporting else p.bundle
        images = work / ("pre-checkpoint" if opts.pre_checkpoint else "checkpoint")
        shutil.rmtree(images, ignore_errors=True)
        leave_running = opts.leave_running or opts.pre_checkpoint
        marker = self.layout.container_dir(c.id) / PENDING_CHECKPOINT
        atomic_write_json(marker, {"work": str(work), "export": str(opts.export or ""), "stops": not leave_running})
        try:
            return self._dump_and_export(c, rt, work, images, leave_running, opts)
        finally:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()

    def _dump_and_export(
        self, c: Container, rt: Runtime, work: Path, images: Path, leave_running: bool, opts: CheckpointOptions
    ) -> Report:
        p = self.containers.paths(c.id)
        exporting = opts.export is not None
        started = time.monotonic()
        with timed("runtime checkpoint (CRIU dump)"):
            res = rt.checkpoint(
                c.id,
                image_path=images,
                work_path=work,
                leave_running=leave_running,
                tcp_established=opts.tcp_established,
                file_locks=opts.file_locks,
                pre_dump=opts.pre_checkpoint,
                parent_path="../pre-checkpoint" if opts.with_previous else None,
            )
        runtime_us = int((time.monotonic() - started) * 1e6)
        if res.returncode != 0:
            self._fail_dump(c, work, exporting, res)
        faults.point("after-dump")
        criu.record_cpuinfo(images)  # lets the restoring host check its CPU first (amber archive check)
        stats = criu.read_stats(work / "stats-dump", "dump") if opts.stats else {}
        stopped = not leave_running
        try:
            if exporting:
                assert opts.export is not None
                with timed("export"):
                    self._export(c, work, opts)
        except BaseException as exc:
            if stopped:
                self._revive(c, work)
            if exporting:
                scratch.discard(work)
            if isinstance(exc, OSError):
                raise AmberError(
                    f"could not write checkpoint archive {opts.export}: {exc.strerror}",
                    hint="check the free space and permissions of the target directory; "
                    f"container {c.name} is still running",
                ) from exc
            raise
        if exporting:
            scratch.discard(work)
        if stopped:
            self.containers.cleanup(c)
            if exporting and not opts.keep:
                shutil.rmtree(p.bundle / "checkpoint", ignore_errors=True)
            c = dataclasses.replace(c, status=Status.CHECKPOINTED, pid=0, checkpointed=now())
        else:
            c = dataclasses.replace(c, checkpointed=now())
        self.containers.store.save(c)
        return Report(c.id, c.name, runtime_us, stats, str(opts.export) if opts.export else None)

    def _memory_of(self, c: Container) -> int:
        path = self.containers.cgroups_path(c)
        return scratch.container_memory(path) if path else 0

    def recover(self, c: Container) -> Container:
        """Finish what a killed amber left half done on `c` (the caller holds its lock)."""
        cdir = self.layout.container_dir(c.id)
        pending_restore = cdir / PENDING_RESTORE
        if pending_restore.exists():
            with contextlib.suppress(OSError, ValueError):
                unpack = Path(str(json.loads(pending_restore.read_text()).get("work") or ""))
                if scratch.is_scratch(self.layout, unpack):
                    scratch.discard(unpack)
            with contextlib.suppress(AmberError, OSError):
                self.containers.cleanup(c)
            self.containers.store.delete(c.id)
            raise NotFoundError(
                f"no such container: {c.name} (an interrupted restore was cleaned up)", hint="restore the archive again"
            )
        marker = cdir / PENDING_CHECKPOINT
        if not marker.exists():
            return c
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            info = {}
        work = Path(str(info.get("work") or ""))
        export = str(info.get("export") or "")
        if export:
            for leftover in Path(export).parent.glob(f".{Path(export).name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        st = self.containers.runtime_for(c).state(c.id)
        if not (st is not None and st.get("status") == "running") and (work / "checkpoint" / "inventory.img").is_file():
            # The dump stopped the container, then amber died: bring it back from its images.
            with contextlib.suppress(AmberError, OSError):
                self._revive(c, work)
        if work.is_dir() and scratch.is_scratch(self.layout, work):
            scratch.discard(work)
        marker.unlink(missing_ok=True)
        return self.containers.store.get(c.id)

    def _fail_dump(self, c: Container, work: Path, exporting: bool, res: Any) -> None:
        """CRIU refused: keep its log where the user can read it, leave the container as it was."""
        kept = self.layout.container_dir(c.id) / "dump.log"
        log = work / "dump.log"
        if log.is_file() and log != kept:
            shutil.copyfile(log, kept)
        lines = criu.log_errors(kept) if kept.is_file() else []
        if exporting:
            scratch.discard(work)
        # CRIU resumes the tasks when a dump fails; if the container died anyway, say so.
        st = self.containers.runtime_for(c).state(c.id)
        running = st is not None and st.get("status") == "running"
        raise CommandError(
            res.argv,
            res.returncode,
            res.stdout,
            "\n".join([*res.stderr.splitlines()[-3:], *lines]),
            what=f"CRIU could not checkpoint container {c.name}",
            hint=(f"container {c.name} is still running; " if running else "") + f"the whole CRIU log is in {kept}",
            log_path=kept,
        )

    def _revive(self, c: Container, work: Path) -> None:
        """The dump stopped the container but the export failed: bring it back from its images."""
        with contextlib.suppress(AmberError):
            self.containers.cleanup(c)
            p = self.containers.paths(c.id)
            target = p.bundle / "checkpoint"
            if work != p.bundle:
                shutil.rmtree(target, ignore_errors=True)
                shutil.move(str(work / "checkpoint"), target)
            self._restore_in_place(c, self.containers.runtime_for(c).info, RestoreOptions(keep=False))

    def _export(self, c: Container, work: Path, opts: CheckpointOptions) -> None:
        assert opts.export is not None
        p = self.containers.paths(c.id)
        spec = json.loads((p.bundle / "config.json").read_text())
        members: list[str] = []
        if p.log.is_file():
            shutil.copyfile(p.log, work / archive.CTR_LOG)
            members.append(archive.CTR_LOG)
        members += [archive.STATS_DUMP, "checkpoint"]
        diff_size = 0
        if not opts.ignore_rootfs:
            with timed("rootfs diff"):
                diff = rootfs_diff.create_rootfs_diff(p.upper, work / archive.ROOTFS_DIFF)
            if diff.tar_written:
                members.append(archive.ROOTFS_DIFF)
                diff_size = (work / archive.ROOTFS_DIFF).stat().st_size
            if diff.deleted:
                (work / archive.DELETED_FILES).write_text(json.dumps(diff.deleted))
                members.append(archive.DELETED_FILES)
        image = self.images.get(c.image_id)
        config = self._config_dump(c, spec, image.id, image.name)
        manifest = _manifest(work, c, diff_size)
        head = {
            archive.AMBER_MANIFEST: json.dumps(manifest, indent=2).encode(),
            archive.CONFIG_DUMP: json.dumps(config, indent=2).encode(),
            archive.SPEC_DUMP: json.dumps(spec, indent=2).encode(),
        }
        with timed(f"write archive ({opts.compression})"):
            archive.write_archive(opts.export, work, members, opts.compression, head=head)

    def _config_dump(self, c: Container, spec: dict[str, Any], image_id: str, image_name: str) -> dict[str, Any]:
        """config.dump: the fields podman and checkpointctl read, plus amber's own."""
        return {
            "id": c.id,
            "name": c.name,
            "rootfsImageID": image_id,
            "rootfsImageName": image_name,
            "RawImageName": image_name,
            "runtime": c.runtime,
            "createdTime": c.created,
            "checkpointedTime": now(),
            "command": c.command,
            "spec": spec,
            "pod": "",
            "namedVolumes": [],
            "logDriver": "k8s-file",
            "cgroupManager": "cgroupfs",
            "amber": {"version": __version__, "runtimePath": c.runtime_path, "criuVersion": criu.version_string()},
        }

    # ================================ restore =================================================
    def restore(self, ref: str | None, opts: RestoreOptions) -> tuple[Container, Report]:
        require_root("restoring a container")
        if opts.import_path is not None:
            if ref:
                raise UsageError("cannot use --import with a container argument")
            return self.restore_import(opts.import_path, opts)
        if ref is None:
            raise UsageError(
                "restore needs a container, or --import FILE",
                hint="amber restore NAME, or amber restore --import ARCHIVE",
            )
        if opts.name or opts.ignore_rootfs:
            raise UsageError("--name and --ignore-rootfs can only be used with --import")
        c = self.containers.store.get(ref)
        with self.containers.lock(c):
            c = self.containers.store.get(c.id)
            if c.status != Status.CHECKPOINTED:
                raise ConflictError(
                    f"container {c.name} is {c.status}, not checkpointed: nothing to restore",
                    hint=f"checkpoint it first: amber checkpoint {c.name}",
                )
            info = (
                select_runtime(c.runtime, opts.runtime or None, f"of container {c.name}")
                if opts.runtime
                else self.containers.runtime_for(c).info
            )
            return self._restore_in_place(c, info, opts)

    def _restore_in_place(
        self, c: Container, info: RuntimeInfo, opts: RestoreOptions, images: Path | None = None
    ) -> tuple[Container, Report]:
        """Restore `c` from its checkpoint images (default: the ones kept in its bundle)."""
        p = self.containers.paths(c.id)
        images = images or p.bundle / "checkpoint"
        if not (images / "inventory.img").is_file():
            raise NotFoundError(
                f"container {c.name} has no complete checkpoint to restore",
                hint=f"checkpoint it again: amber checkpoint {c.name}",
            )
        image = self.images.get(c.image_id)
        try:
            self.containers.prepare_root(c, image_layers=self.images.layer_dirs(image))
            started = time.monotonic()
            with timed("runtime restore (CRIU)"):
                pid = conmon.start_monitor(
                    self.containers.runtime_of(info),
                    self.containers.monitor_spec(c),
                    restore_from=images,
                    runtime_opts=_runtime_opts(opts),
                )
            runtime_us = int((time.monotonic() - started) * 1e6)
        except AmberError as exc:
            conmon.stop_monitor(self.containers.monitor_spec(c))
            self.containers.cleanup(c)
            _explain_restore_failure(exc, p.bundle / "restore.log")
            raise
        stats = criu.read_stats(p.bundle / "stats-restore", "restore") if opts.stats else {}
        if opts.keep and images != p.bundle / "checkpoint":
            shutil.rmtree(p.bundle / "checkpoint", ignore_errors=True)
            shutil.move(str(images), p.bundle / "checkpoint")
        elif not opts.keep:
            shutil.rmtree(images, ignore_errors=True)
        c = dataclasses.replace(
            c, status=Status.RUNNING, pid=pid, restored=True, started=now(), exit_code=None, finished=""
        )
        self.containers.store.save(c)
        return c, Report(c.id, c.name, runtime_us, stats)

    def restore_import(self, path: Path, opts: RestoreOptions) -> tuple[Container, Report]:
        """A new container from an archive. Nothing is extracted before every check has passed."""
        head = archive.read_head(path)
        config = head.config
        info = select_runtime(str(config.get("runtime") or ""), opts.runtime, str(path))
        image = self._archive_image(config, path)
        name = validate_name(opts.name) if opts.name else _archive_name(config, path)
        _check_spec_shape(head.spec, path)
        confinement.check_spec(head.spec, str(path), trust=opts.trust_archive)  # before any work
        self.layout.ensure()
        with contextlib.ExitStack() as held:
            with self.containers.lock_names():
                c = self._new_restored_record(path, head, info, image, name, opts)
                # Locked before the record appears: nobody can take it for an interrupted restore.
                held.enter_context(self.containers.lock(c))
                unpack = scratch.work_dir(self.layout, f"restore-{c.id[:12]}-", _images_size(head))
                marker = self.layout.container_dir(c.id) / PENDING_RESTORE
                atomic_write_json(marker, {"archive": str(path), "work": str(unpack)})
                self.containers.store.save(c)
            try:
                restored = self._unpack_and_restore(c, head, info, opts, unpack)
                marker.unlink(missing_ok=True)
                return restored
            except BaseException:
                with contextlib.suppress(Exception):
                    self.containers.cleanup(c)
                self.containers.store.delete(c.id)
                raise
            finally:
                scratch.discard(unpack)

    def _new_restored_record(
        self, path: Path, head: archive.ArchiveHead, info: RuntimeInfo, image: Image, name: str, opts: RestoreOptions
    ) -> Container:
        """The record of the container an archive becomes (the caller holds the names lock)."""
        config = head.config
        try:
            self.containers.store.check_name_free(name)
        except ConflictError as exc:
            exc.hint = f"restore it under another name with --name, or remove the container: amber rm -f {name}"
            raise
        old_id = str(config.get("id") or "")
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
            command=_command(head.spec),
            created=str(config.get("createdTime") or now()),
            status=Status.CREATED,
            restored_from=str(path),
        )

    def _unpack_and_restore(
        self, c: Container, head: archive.ArchiveHead, info: RuntimeInfo, opts: RestoreOptions, unpack: Path
    ) -> tuple[Container, Report]:
        """Unpack into `unpack` (a scratch dir: tmpfs when the images fit), then restore from it."""
        p = self.containers.paths(c.id)
        skip = {archive.CONFIG_DUMP, archive.SPEC_DUMP, archive.AMBER_MANIFEST}
        with timed("extract archive"):
            archive.extract_archive(head.path, unpack, skip=lambda n: n in skip)
        faults.point("after-extract")
        # CRIU can spin for ever on images it cannot parse: decode the process tree first.
        images = criu_images.ImageDir(unpack / "checkpoint", str(head.path))
        confinement.check_images(images, head.spec, trust=opts.trust_archive)  # creds and seccomp too
        for result in (archive_checks.check_criu(head, unpack), archive_checks.check_cpu(unpack)):
            if result.failed:  # the same checks as `amber archive check`, before CRIU is asked
                raise PreconditionError(
                    f"checkpoint archive {head.path} cannot be restored here: {result.reason}", hint=result.hint or None
                )
        image = self.images.get(c.image_id)
        self.containers.prepare_root(c, image_layers=self.images.layer_dirs(image))
        if not opts.ignore_rootfs:
            # Deletions first: a directory the container deleted and made again is in both lists.
            deleted = unpack / archive.DELETED_FILES
            if deleted.is_file():
                paths = rootfs_diff.parse_deleted_files(deleted.read_bytes(), str(head.path))
                rootfs_diff.apply_deleted_files(paths, p.merged)
            diff = unpack / archive.ROOTFS_DIFF
            if diff.is_file():
                rootfs_diff.apply_rootfs_diff(diff, p.merged)
        _restore_dir_modes(p.merged, unpack / "checkpoint")
        spec = confinement.restore_spec(
            head.spec,
            rootfs=p.merged,
            netns=p.netns,
            root=self.layout.root,
            bundle=p.bundle,
            cid=c.id,
            source=str(head.path),
            trust=opts.trust_archive,
        )
        self._restore_devshm(spec, unpack, p.bundle)
        atomic_write_json(p.bundle / "config.json", spec)
        for kept in (archive.CTR_LOG, archive.STATS_DUMP, archive.NETWORK_STATUS):
            if (unpack / kept).is_file():
                shutil.move(str(unpack / kept), p.bundle / kept)
        return self._restore_in_place(c, info, opts, images=unpack / "checkpoint")

    def _restore_devshm(self, spec: dict[str, Any], unpack: Path, bundle: Path) -> None:
        """Unpack devshm-checkpoint.tar into the /dev/shm source amber made in the bundle."""
        tar = unpack / archive.DEVSHM
        if not tar.is_file():
            return
        for mount in spec.get("mounts", []):
            source = Path(str(mount.get("source", "")))
            if mount.get("destination") == "/dev/shm" and source.parent == bundle / "restore-mounts":
                with tar.open("rb") as f:
                    safe_tar.extract(
                        f, source, archive_name=f"{archive.DEVSHM} in {unpack}", keep_owner=True, allow_special=False
                    )

    def _archive_image(self, config: dict[str, Any], path: Path) -> Image:
        name = str(config.get("rootfsImageName") or "")
        image_id = str(config.get("rootfsImageID") or "")
        for ref in (name, image_id):
            if ref:
                with contextlib.suppress(NotFoundError, UsageError):
                    return self.images.get(ref)
        shown = name or image_id or "(none recorded)"
        raise NotFoundError(
            f"checkpoint archive {path} needs image {shown}, which is not present",
            hint=f"import it first: amber image import ROOTFS.tar {name or 'NAME'}",
        )


def _restore_dir_modes(root: Path, images: Path) -> None:
    """Give the root and working directories the modes CRIU recorded (it checks them).

    The names come from the archive: each is walked inside `root` without following symlinks or
    `..`, and changed through its own file descriptor, so nothing outside the root is touched.
    """
    import stat

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


def _runtime_opts(opts: RestoreOptions) -> list[str]:
    return [
        *(["--tcp-established"] if opts.tcp_established else []),
        *(["--tcp-close"] if opts.tcp_close else []),
        *(["--file-locks"] if opts.file_locks else []),
    ]


def _explain_restore_failure(exc: AmberError, log: Path) -> None:
    lines = criu.log_errors(log)
    if lines:
        exc.details = [*exc.details, *lines, f"restore log: {log}"]
    if exc.hint is None:
        exc.hint = "see the CRIU lines above; the archive is unchanged and can be restored again"


def _archive_name(config: dict[str, Any], path: Path) -> str:
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise ArchiveError(f"checkpoint archive {path} records no usable container name", hint="give one with --name")
    try:
        return validate_name(name)
    except UsageError as exc:
        raise ArchiveError(
            f"checkpoint archive {path} records an invalid container name {name!r}", hint="give another with --name"
        ) from exc


def _check_spec_shape(spec: dict[str, Any], path: Path) -> None:
    """spec.dump must be an OCI spec in shape before anything is built from it."""

    def bad(what: str) -> ArchiveError:
        return ArchiveError(
            f"checkpoint archive {path} has a malformed spec.dump: {what}",
            hint="the archive is damaged or was not written by a container engine",
        )

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
    if not isinstance(linux.get("namespaces", []), list) or not all(
        isinstance(ns, dict) for ns in linux.get("namespaces", [])
    ):
        raise bad("linux.namespaces is not a list of objects")
    for key in ("cgroupsPath",):
        if key in linux and not isinstance(linux[key], str):
            raise bad(f"linux.{key} is not a string")


def _images_size(head: archive.ArchiveHead) -> int:
    """Bytes the checkpoint images will take once unpacked, when the archive says (amber's do)."""
    sizes = (head.manifest or {}).get("sizes")
    value = sizes.get("checkpoint") if isinstance(sizes, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def _manifest(work: Path, c: Container, diff_size: int) -> dict[str, Any]:
    images = work / "checkpoint"
    total = pages = 0
    for f in images.iterdir():
        if f.is_file():
            size = f.stat().st_size
            total += size
            if f.name.startswith("pages-"):
                pages += size
    return {
        "schema_version": 1,
        "amber_version": __version__,
        "criu_version": criu.version_string(),
        "container": c.name,
        "runtime": c.runtime,
        "sizes": {"checkpoint": total, "memory_pages": pages, "rootfs_diff": diff_size},
    }


def _numbered(export: Path, name: str) -> Path:
    """-a with --export: one archive per container, never one file overwritten by all."""
    base = export.name
    for suffix in (".tar.zst", ".tar.gz", ".tar"):
        if base.endswith(suffix):
            return export.with_name(f"{base[: -len(suffix)]}-{name}{suffix}")
    return export.with_name(f"{base}-{name}")


def _is_hex_id(value: str) -> bool:
    return len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)


def _command(spec: dict[str, Any]) -> list[str]:
    process = spec.get("process")
    args = process.get("args") if isinstance(process, dict) else None
    return [str(a) for a in args] if isinstance(args, list) else []


__all__ = ["CheckpointOptions", "CheckpointService", "Report", "RestoreOptions"]
