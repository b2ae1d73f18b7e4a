"""`amber archive`: show, inspect, memparse, diff and check any checkpoint archive (amber's,
podman's, CRI-O's or containerd's), as checkpointctl does, reading each archive once.

amber's own archives start with amber.manifest (sizes included) and config.dump/spec.dump, so
`show` reads only their first kilobytes. For the others, sizes come from the tar headers.
`inspect` extracts only the images it needs, in one streaming pass, to a temporary directory
under amber's tmp that is removed afterwards; memory pages are decompressed only when asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from amber.adapters import checkpoint_archive as archive
from amber.adapters import criu_memory as mem
from amber.adapters import state
from amber.adapters.criu_files import read_files, read_sockets
from amber.adapters.criu_images import ImageDir, Process, read_dump_stats, read_processes
from amber.adapters.podman_format import CPUINFO_IMG, spec_annotations
from amber.config import Layout
from amber.engine import archive_checks
from amber.engine import archive_parts as parts
from amber.engine import attachments as attach
from amber.engine.archive_models import (
    ArchiveDiff,
    ArchiveInspection,
    ArchiveSummary,
    CheckResult,
    InspectOptions,
    MemoryDump,
    MemoryRegion,
    ProcessMemory,
)
from amber.errors import AmberError, ConflictError, NotFoundError, UsageError

CKPT = archive.CHECKPOINT_DIR + "/"
_PAGES_RE = re.compile(r"checkpoint/pages-(\d+)\.img")
_RFC3339_RE = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")


def rfc3339(value: str | None) -> str:
    """A timestamp as Go's time.RFC3339 prints it (whole seconds, `Z` or an offset)."""
    text = str(value or "")
    m = _RFC3339_RE.match(text)
    if not m:
        return text
    zone = m.group(3) or "Z"
    if zone not in ("Z",) and ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    return m.group(1).replace(" ", "T") + zone


class _Want:
    """Which archive members an operation needs. Pages files can be limited to the processes in
    `pages_for`: by the time a pages-N.img comes by, the pagemaps (which sort before it, and name
    their pages_id) are on disk; when one is not yet, the pages file is taken to be safe."""

    def __init__(
        self,
        dest: Path,
        names: set[str],
        prefixes: Sequence[str],
        pages: bool = False,
        pages_for: set[int] | None = None,
    ) -> None:
        self.dest, self.names, self.prefixes = dest, names, tuple(prefixes)
        self.pages, self.pages_for = pages, pages_for

    def __call__(self, name: str) -> bool:
        if name in self.names or name.startswith(self.prefixes):
            return True
        m = _PAGES_RE.fullmatch(name)
        if m is None or not self.pages:
            return False
        if self.pages_for is None:
            return True
        d = ImageDir(self.dest / archive.CHECKPOINT_DIR, name)
        for pid in self.pages_for:
            try:
                pagemap = mem.read_pagemap(d, pid) if d.has(f"pagemap-{pid}.img") else None
            except AmberError:
                return True
            if pagemap is None or pagemap.pages_id == int(m.group(1)):
                return True
        return False


class ArchiveService:
    def __init__(self, layout: Layout, images: archive_checks.Images, containers: archive_checks.Containers) -> None:
        self.layout = layout
        self.images = images
        self.containers = containers

    # ------------------------------------------------------------------ show
    def show(self, paths: Sequence[str | Path]) -> list[ArchiveSummary]:
        return [self._summary(archive.read_head(Path(p))) for p in paths]

    def _summary(self, head: archive.ArchiveHead, sizes: tuple[int, int, int] | None = None) -> ArchiveSummary:
        config = head.config_dump
        ann = spec_annotations(head.spec)
        manager = ann.get("io.container.manager", "")
        created = rfc3339(config.created_time)
        pod = namespace = ""
        if manager == "libpod":
            engine, name = "Podman", config.name or ""
        elif manager == "cri-o":
            engine, created = "CRI-O", ann.get("io.kubernetes.cri-o.Created", "")
            try:
                name = str(json.loads(ann.get("io.kubernetes.cri-o.Metadata", "")).get("name", ""))
            except (ValueError, AttributeError):
                name = ""
            pod, namespace = ann.get("io.kubernetes.pod.name", ""), ann.get("io.kubernetes.pod.namespace", "")
        else:
            engine, name = "containerd", ann.get("io.kubernetes.cri.container-name", "")
            pod = ann.get("io.kubernetes.cri.sandbox-name", "")
            namespace = ann.get("io.kubernetes.cri.sandbox-namespace", "")
        checkpoint, pages, diff = sizes if sizes is not None else self._sizes(head)
        return ArchiveSummary(
            path=str(head.path),
            container=name,
            image=config.rootfs_image_name or "",
            id=config.id or "",
            runtime=config.runtime or "",
            engine=engine,
            created=created,
            checkpointed=rfc3339(config.checkpointed_time) if config.checkpointed_time else "",
            checkpoint_size=checkpoint,
            memory_pages_size=pages,
            rootfs_diff_size=diff,
            compression=str(head.compression),
            pod=pod,
            namespace=namespace,
            amber=head.amber_manifest is not None,
        )

    def summary_of(self, head: archive.ArchiveHead) -> ArchiveSummary:
        """The summary from the archive's first members only (sizes left at 0). Raises nothing."""
        return self._summary(head, (0, 0, 0))

    def _sizes(self, head: archive.ArchiveHead) -> tuple[int, int, int]:
        """(checkpoint/, pages, rootfs diff) sizes: amber's manifest, else the tar headers."""
        recorded = parts.manifest_sizes(head)
        return recorded if recorded is not None else parts.member_sizes(archive.list_members(head.path), head.path)

    # ------------------------------------------------------------------ extraction
    @contextlib.contextmanager
    def _extracted(
        self,
        path: Path,
        make_want: Callable[[Path], _Want],
        observe: Callable[[archive.MemberInfo], None] | None = None,
    ) -> Iterator[Path]:
        tmp = Path(tempfile.mkdtemp(prefix="archive-", dir=self._scratch_parent()))
        try:
            archive.extract_members(path, tmp, make_want(tmp), observe)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _scratch_parent(self) -> Path | None:
        """amber's tmp directory, or (a user who cannot write amber's root reading an archive
        they can read) the system's temporary directory."""
        try:
            self.layout.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        except PermissionError:
            return None
        return self.layout.tmp if os.access(self.layout.tmp, os.W_OK | os.X_OK) else None

    # ------------------------------------------------------------------ inspect
    def inspect(self, path: str | Path, opts: InspectOptions | None = None) -> ArchiveInspection:
        """What checkpointctl inspect shows (the parts `opts` asks for; none: the summary), from
        one pass over the archive. Raises NotFoundError (archive, `opts.pid`), ArchiveError."""
        inspection, _memory = self._inspect(Path(path), opts or InspectOptions(), memory=False)
        return inspection

    def _inspect(
        self, path: Path, opts: InspectOptions, *, memory: bool, tree_required: bool = True
    ) -> tuple[ArchiveInspection, list[ProcessMemory]]:
        ps_tree = opts.processes or memory
        head = archive.read_head(path)
        recorded = parts.manifest_sizes(head)
        members: list[archive.MemberInfo] = []  # headers seen on the one pass, when sizes are not recorded
        names = {archive.NETWORK_STATUS, *([archive.STATS_DUMP] if opts.stats else [])}
        prefixes: list[str] = []
        if ps_tree:
            names.add(CKPT + "pstree.img")
            prefixes.append(CKPT + "core-")
        if opts.ps_tree_cmd or opts.ps_tree_env or memory:
            prefixes += [CKPT + "mm-", CKPT + "pagemap-"]
        if opts.files or opts.sockets:
            names.add(CKPT + "files.img")
            prefixes += [CKPT + "ids-", CKPT + "fdinfo-", *([CKPT + "fs-"] if opts.files else [])]
        pages = opts.ps_tree_cmd or opts.ps_tree_env
        with self._extracted(
            path, lambda tmp: _Want(tmp, names, prefixes, pages=pages), None if recorded is not None else members.append
        ) as tmp:
            sizes = recorded if recorded is not None else parts.member_sizes(members, path)
            d = ImageDir(tmp / archive.CHECKPOINT_DIR, str(path))
            procs: list[Process] | None = None
            memory_table: list[ProcessMemory] = []
            if ps_tree and not tree_required and not (d.path / "pstree.img").is_file():
                procs, pages, memory = [], False, False
            if ps_tree:
                procs = procs if procs is not None else read_processes(d)
                if opts.pid is not None and opts.pid not in {p.pid for p in procs}:
                    raise _no_pid(opts.pid, path)
                if pages:
                    procs = [mem.read_args(d, p, cmdline=opts.ps_tree_cmd, env=opts.ps_tree_env) for p in procs]
                if memory:
                    memory_table = _memory_table(d, procs)
            parts.require_parts(path, tmp, stats=opts.stats, files=bool((opts.files or opts.sockets) and procs))
            summary = self._summary(head, sizes)
            inspection = ArchiveInspection(
                summary=summary,
                networks=parts.networks(tmp / archive.NETWORK_STATUS),
                **_attachments(head),
                statistics=read_dump_stats(tmp / archive.STATS_DUMP, str(path)) if opts.stats else None,
                metadata=parts.metadata(head, summary) if opts.metadata else None,
                processes=procs,
                root_pid=opts.pid,
                files=(read_files(d, procs) if procs else []) if opts.files else None,
                sockets=(read_sockets(d, procs) if procs else []) if opts.sockets else None,
                mounts=parts.mounts(head.spec) if opts.mounts else None,
            )
        return inspection, memory_table

    # ------------------------------------------------------------------ memparse
    def memparse(
        self,
        path: str | Path,
        *,
        pid: int | None = None,
        search: str | None = None,
        search_regex: str | None = None,
        context: int = 0,
        output: str | Path | None = None,
    ) -> list[ProcessMemory] | MemoryDump | list[mem.SearchMatch]:
        """Memory sizes per process; with `pid`, its pages (hexdump, or raw to `output`); with a
        search, the matches (in `pid`, or in every process)."""
        if search is not None and search_regex is not None:
            raise UsageError("give either --search or --search-regex, not both")
        if search is not None or search_regex is not None:
            return self.memory_search(path, pid=pid, search=search, search_regex=search_regex, context=context)
        if pid is not None:
            return self.memory_dump(path, pid, output=output)
        return self.memory_sizes(path)

    def memory_sizes(self, path: str | Path) -> list[ProcessMemory]:
        p = Path(path)
        want = {CKPT + "pstree.img"}
        prefixes = [CKPT + "core-", CKPT + "mm-", CKPT + "pagemap-"]
        with self._extracted(p, lambda tmp: _Want(tmp, want, prefixes)) as tmp:
            d = ImageDir(tmp / archive.CHECKPOINT_DIR, str(p))
            return _memory_table(d, read_processes(d))

    @contextlib.contextmanager
    def _pages(self, path: Path, pids: set[int] | None) -> Iterator[tuple[ImageDir, list[Process]]]:
        names = {CKPT + "pstree.img"}
        prefixes = [CKPT + "core-", CKPT + "mm-", CKPT + "pagemap-"]
        with self._extracted(path, lambda tmp: _Want(tmp, names, prefixes, pages=True, pages_for=pids)) as tmp:
            d = ImageDir(tmp / archive.CHECKPOINT_DIR, str(path))
            procs = read_processes(d)
            for pid in pids or ():
                if pid not in {p.pid for p in procs}:
                    raise _no_pid(pid, path)
            yield d, procs

    def memory_dump(self, path: str | Path, pid: int, *, output: str | Path | None = None) -> MemoryDump:
        p = Path(path)
        with self._pages(p, {pid}) as (d, procs):
            proc = next(x for x in procs if x.pid == pid)
            pagemap = mem.read_pagemap(d, pid)
            if pagemap is None:
                raise d.error(f"pagemap-{pid}.img", f"is missing: the memory of process {pid} was not dumped")
            with mem.PageReader(d, pagemap) as reader:
                if output is None:
                    return MemoryDump(pid, proc.comm, list(mem.hexdump(reader)))
                regions, offset = [], 0
                for vaddr, size, _off in reader.regions():
                    regions.append(MemoryRegion(vaddr, size, offset))
                    offset += size
                try:
                    # Process memory holds secrets: a new file, 0600, never through a planted symlink.
                    with state.create_private(Path(output)) as f:
                        written = reader.copy_to(f)
                except FileExistsError as exc:
                    raise ConflictError(
                        f"could not write the memory of process {pid} to {output}: it exists already",
                        hint="give a new file name (amber never overwrites a file or follows a symlink here)",
                    ) from exc
                except OSError as exc:
                    raise AmberError(
                        f"could not write the memory of process {pid} to {output}: {exc.strerror or exc}",
                        hint="check the path and free space",
                    ) from exc
                return MemoryDump(pid, proc.comm, [], str(output), written, regions)

    def memory_search(
        self,
        path: str | Path,
        *,
        pid: int | None = None,
        search: str | None = None,
        search_regex: str | None = None,
        context: int = 0,
    ) -> list[mem.SearchMatch]:
        if context < 0:
            raise UsageError(f"--context must be 0 or more, not {context}")
        if search:
            pattern = re.compile(re.escape(search.encode()))
        elif search_regex:
            try:
                pattern = re.compile(search_regex.encode())
            except re.error as exc:
                raise UsageError(
                    f"--search-regex {search_regex!r} is not a valid regular expression: {exc}",
                    hint="Python `re` syntax; quote it for the shell",
                ) from exc
        else:
            raise UsageError("the search pattern is empty", hint="give --search STR or --search-regex RE")
        p = Path(path)
        with self._pages(p, {pid} if pid is not None else None) as (d, procs):
            out: list[mem.SearchMatch] = []
            for proc in procs:
                if (pid is not None and proc.pid != pid) or not proc.alive_or_stopped:
                    continue
                pagemap = mem.read_pagemap(d, proc.pid)
                if pagemap is None:
                    continue
                with mem.PageReader(d, pagemap) as reader:
                    out += mem.search(reader, pattern, context=context)
            return out

    # ------------------------------------------------------------------ diff
    def diff(
        self,
        a: str | Path,
        b: str | Path,
        *,
        ps_tree_cmd: bool = True,
        ps_tree_env: bool = False,
        files: bool = True,
        sockets: bool = True,
    ) -> ArchiveDiff:
        """What changed from checkpoint `a` to `b` (checkpointctl's diff). An archive without
        CRIU images (metadata only) has no processes. Raises NotFoundError, ArchiveError."""
        from amber.engine.archive_diff import diff_inspections

        opts = InspectOptions(
            ps_tree=True, ps_tree_cmd=ps_tree_cmd, ps_tree_env=ps_tree_env, files=files, sockets=sockets
        )
        ia, ma = self._inspect(Path(a), opts, memory=True, tree_required=False)
        ib, mb = self._inspect(Path(b), opts, memory=True, tree_required=False)
        return diff_inspections(ia, ma, ib, mb)

    # ------------------------------------------------------------------ check
    def check(
        self,
        path: str | Path,
        *,
        runtime: str | None = None,
        name: str | None = None,
        cpu: bool = True,
        kernel: bool = True,
    ) -> list[CheckResult]:
        """Can this host restore the archive? One result per check; nothing is changed."""
        p = Path(path)
        head = archive.read_head(p)
        wanted = {archive.INVENTORY, CKPT + CPUINFO_IMG, CKPT + "pstree.img"}  # + core-*: the privileges row
        if cpu:
            with self._extracted(p, lambda tmp: _Want(tmp, wanted, (CKPT + "core-",))) as tmp:
                return archive_checks.run_checks(
                    head, tmp, self.images, self.containers, runtime=runtime, name=name, kernel=kernel
                )
        return archive_checks.run_checks(
            head, None, self.images, self.containers, runtime=runtime, name=name, kernel=kernel
        )


# ===================================== helpers ================================================
def _no_pid(pid: int, path: Path) -> NotFoundError:
    return NotFoundError(
        f"no process with PID {pid} in checkpoint archive {path}",
        hint=f"amber archive inspect --ps-tree {path} lists its processes",
    )


def _memory_table(d: ImageDir, procs: list[Process]) -> list[ProcessMemory]:
    out = []
    for p in procs:
        if not p.alive_or_stopped:
            continue  # zombies and dead tasks have no memory (checkpointctl skips them too)
        pagemap = mem.read_pagemap(d, p.pid)
        out.append(
            ProcessMemory(
                p.pid,
                p.comm,
                pagemap.memory_size if pagemap else 0,
                mem.shared_memory_size(d, p.pid),
                mem.pages_file(pagemap) if pagemap else "",
            )
        )
    return out


def _attachments(head: archive.ArchiveHead) -> dict[str, list[str]]:
    """The container's published ports and volumes, as its config.dump records them."""
    att = attach.from_config(head.config_dump.extra, None)
    return {"ports": [str(p) for p in att.ports], "volumes": [*att.volumes, *(f"tmpfs {t}" for t in att.tmpfs)]}


__all__ = ["ArchiveService", "rfc3339"]
