"""The options of a restore (`amber restore`, in place or from an archive) and how they reach
the runtime and CRIU."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters.runtime import RuntimeInfo
from amber.errors import UsageError
from amber.layout import ContainerLayout

if TYPE_CHECKING:
    from amber.adapters.tar.progress import Progress


@dataclasses.dataclass(frozen=True)
class RestoreOptions:
    name: str | None = None  # only with an archive
    runtime: str | None = None
    keep: bool = False
    tcp_established: bool = False
    tcp_close: bool = False
    file_locks: bool = False
    ignore_rootfs: bool = False  # only with an archive
    stats: bool = False
    trust_archive: bool = False  # obey the archive's privileges (spec.dump, CRIU credentials)
    progress: Progress | None = None  # told how the archive's unpacking goes (the CLI's bar)
    ignore_static_ip: bool = False  # take a new IP, not the recorded one
    ignore_static_mac: bool = False  # take a new MAC, not the recorded one
    ignore_volumes: bool = False  # only with an archive: leave the named volumes' content out
    publish: tuple[str, ...] | None = None  # only with an archive: replaces the port mappings
    # only with an archive: called with the unpacked images directory before any check of it, to
    # complete it (engine.transfer: the pages a CRIU page server received). May raise AmberError.
    complete_images: Callable[[Path], None] | None = None
    # a lazy restore (the memory comes from `criu lazy-pages`, amber migrate --mode lazy): called
    # with (images, CRIU's work directory) right before the runtime restores, to start that
    # daemon there (its socket must be in the restore's work directory). May raise AmberError.
    lazy_pages: Callable[[Path, Path], None] | None = None
    # only with an archive: the id of the container whose network namespace the caller already
    # joined to its network (amber migrate's destination, engine/migrate_prepare.py): its lease
    # is not a conflict, and the namespace is used as it is
    prepared: str = ""

    @property
    def keep_address(self) -> tuple[bool, bool]:
        """(IP, MAC): which recorded addresses to ask for again (none for a copy under --name)."""
        return (not self.ignore_static_ip and not self.name, not self.ignore_static_mac and not self.name)

    def validate(self, *, archive: bool) -> None:
        """Raises UsageError for options that do not go together (`archive`: restoring one)."""
        if self.tcp_established and self.name:
            raise UsageError(
                "--tcp-established cannot be used with --name",
                hint="a copy under a new name cannot take over the connections: leave out --tcp-established",
            )
        if not archive and (self.ignore_volumes or self.publish is not None):
            raise UsageError(
                "--ignore-volumes and --publish can only be used with --import",
                hint="they apply to a restore from an archive (amber restore --import ARCHIVE); leave them out here",
            )
        if not archive and (self.name or self.ignore_rootfs):
            raise UsageError(
                "--name and --ignore-rootfs can only be used with --import",
                hint="they apply to a restore from an archive (amber restore --import ARCHIVE); leave them out here",
            )

    def criu_config(self, info: RuntimeInfo) -> str:
        """CRIU options for a restore that the runtime cannot pass on itself, as the lines of a
        CRIU configuration file ("" when none). CRIU reads it from CRIU_CONFIG_FILE, which both
        runtimes hand on to `criu swrk`."""
        lazy = "lazy-pages\n" if self.lazy_pages is not None and info.kind != "runc" else ""  # crun 1.21: no flag
        return lazy + ("tcp-close\n" if self.tcp_close and not _has_tcp_close(info) else "")

    def runtime_opts(self, info: RuntimeInfo) -> list[str]:
        """What conmon passes on to `runtime restore` (`info`'s)."""
        return [
            *(["--tcp-established"] if self.tcp_established else []),
            *(["--tcp-close"] if self.tcp_close and "tcp-close" not in self.criu_config(info) else []),
            *(["--lazy-pages"] if self.lazy_pages is not None and info.kind == "runc" else []),
            *(["--file-locks"] if self.file_locks else []),
        ]


def criu_config_file(p: ContainerLayout, text: str) -> Path | None:
    """The restore's CRIU configuration file in the bundle (None, and none left, without one)."""
    path = p.criu_restore_config
    if not text:
        path.unlink(missing_ok=True)
        return None
    path.write_text(text)
    return path


def _has_tcp_close(info: RuntimeInfo) -> bool:
    """Does `<runtime> restore` take --tcp-close? Asked of its own --help, once per binary."""
    from amber.adapters import probe_cache
    from amber.adapters.run import ACTION_TIMEOUT, run

    def ask() -> bool:
        res = run([info.path, "restore", "--help"], check=False, timeout=ACTION_TIMEOUT)
        return "--tcp-close" in res.stdout + res.stderr

    answer = probe_cache.ask(info.path, "restore --help: --tcp-close", ask)
    return answer if isinstance(answer, bool) else ask()


__all__ = ["RestoreOptions", "criu_config_file"]
