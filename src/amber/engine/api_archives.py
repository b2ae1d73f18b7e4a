"""The Engine's calls on checkpoint archives: show, inspect, memparse, check (a mixin of Engine)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from amber.engine.services import Services, with_runner

if TYPE_CHECKING:
    from amber.adapters import run as runners
    from amber.adapters.criu_memory import SearchMatch
    from amber.engine.archive_models import (
        ArchiveInspection,
        ArchiveSummary,
        CheckResult,
        MemoryDump,
        ProcessMemory,
    )

PathLike = str | os.PathLike[str]

__all__ = ["ArchiveCalls"]


class ArchiveCalls:
    """show_archives, inspect_archive, memparse, check_archive."""

    services: Services
    runner: runners.Runner

    @with_runner
    def show_archives(self, archives: Iterable[PathLike]) -> list[ArchiveSummary]:
        """One summary per checkpoint archive, read from its first members (`amber archive show`).
        Raises NotFoundError, ArchiveError."""
        from amber.engine.options import as_path

        return self.services.archives.show([as_path(a) for a in archives])

    @with_runner
    def inspect_archive(
        self,
        archive: PathLike,
        *,
        all: bool = False,
        ps_tree: bool = False,
        ps_tree_cmd: bool = False,
        ps_tree_env: bool = False,
        files: bool = False,
        sockets: bool = False,
        mounts: bool = False,
        stats: bool = False,
        metadata: bool = False,
        pid: int | None = None,
    ) -> ArchiveInspection:
        """What a checkpoint archive holds (`amber archive inspect`): `all` turns on every part
        but the bare process tree. Raises NotFoundError (archive, `pid`), ArchiveError."""
        from amber.engine.archive_models import InspectOptions
        from amber.engine.options import as_path

        opts = InspectOptions(
            ps_tree=ps_tree,
            ps_tree_cmd=ps_tree_cmd or all,
            ps_tree_env=ps_tree_env or all,
            files=files or all,
            sockets=sockets or all,
            mounts=mounts or all,
            stats=stats or all,
            metadata=metadata or all,
            pid=pid,
        )
        return self.services.archives.inspect(as_path(archive), opts)

    @with_runner
    def memparse(
        self,
        archive: PathLike,
        *,
        pid: int | None = None,
        search: str | None = None,
        search_regex: str | None = None,
        context: int = 0,
        output: PathLike | None = None,
    ) -> list[ProcessMemory] | MemoryDump | list[SearchMatch]:
        """An archive's memory (`amber archive memparse`): sizes per process; with `pid`, its
        pages (or written raw to `output`); with a search, the matches. Raises UsageError (both
        searches, bad regex), NotFoundError (archive, pid), ArchiveError."""
        from amber.engine.options import as_path

        return self.services.archives.memparse(
            as_path(archive),
            pid=pid,
            search=search,
            search_regex=search_regex,
            context=context,
            output=as_path(output) if output is not None else None,
        )

    @with_runner
    def check_archive(
        self, archive: PathLike, *, runtime: str | None = None, name: str | None = None
    ) -> list[CheckResult]:
        """Could this host restore the archive (`amber archive check`)? One result per check;
        nothing changes. Raises NotFoundError, ArchiveError (unreadable archive)."""
        from amber.engine.options import as_path

        return self.services.archives.check(
            as_path(archive), runtime=runtime or self.services.runtime_choice, name=name
        )
