"""Moving a container's memory to another host: the primitives `amber migrate` builds on.

Modes (MemoryMode): `copy` (the pages travel inside the images, as an archive does),
`page-server` (the dump streams its pages to a CRIU page server on the destination: PageReceiver
there, `dump_to_page_server` here), `lazy` (post-copy over userfaultfd: preflight with
`check_host(MemoryMode.LAZY)`, destination LazyReceiver). Pre-copy is refused where the kernel
does not track dirty memory (`criu_transfer.refuse_precopy`).

Guarantee: a dump to a page server that fails (the destination is not there, or dies midway)
leaves the source container running: the checkpoint's own guarantee (engine.checkpoint).
"""

from __future__ import annotations

import dataclasses
import enum
import types
from pathlib import Path

from amber.adapters import criu, criu_transfer
from amber.adapters.criu_transfer import Daemon, PageEndpoint
from amber.engine.checkpoint import CheckpointOptions, CheckpointService
from amber.errors import AmberError
from amber.models import Report

# How long a page server may wait for a dump to connect and finish before amber stops it.
RECEIVE_TIMEOUT = 600.0


class MemoryMode(enum.Enum):
    COPY = "copy"
    PAGE_SERVER = "page-server"
    LAZY = "lazy"


def check_host(mode: MemoryMode, *, raise_pipe_size: bool = False) -> None:
    """Raises PreconditionError when this host cannot move memory in `mode` (lazy: CRIU >= 4.2,
    fs.pipe-max-size, userfaultfd; `raise_pipe_size` lets amber raise fs.pipe-max-size)."""
    if mode is MemoryMode.LAZY:
        criu_transfer.check_lazy_host(raise_pipe_size=raise_pipe_size)


def dump_to_page_server(
    checkpoints: CheckpointService, ref: str, endpoint: PageEndpoint, opts: CheckpointOptions | None = None
) -> Report:
    """Checkpoint container `ref` with its pages sent to the CRIU page server at `endpoint`; the
    other images go where `opts` says (an export: the archive, or a stream with `export_to`;
    none: the container's bundle, checkpointed as `amber checkpoint` leaves it).

    Raises as CheckpointService.checkpoint does; a failed dump (CommandError naming CRIU) leaves
    the container running."""
    opts = dataclasses.replace(opts or CheckpointOptions(), page_server=endpoint)
    return checkpoints.checkpoint([ref], opts)[0]


class _Receiver:
    """A destination daemon of the transfer, stopped (if it still runs) when the block ends."""

    _daemon: Daemon | None = None

    def _wait(self, timeout: float) -> bool:
        assert self._daemon is not None, f"use {type(self).__name__} in a with block"
        return self._daemon.wait(timeout)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        if self._daemon is not None:
            self._daemon.stop()


class PageReceiver(_Receiver):
    """The destination's CRIU page server, writing the pages of one dump into `images`.

    `with PageReceiver(images, endpoint, log) as rx:` returns once it listens (AmberError when
    it cannot); `rx.finished(timeout)` says whether the whole dump arrived; leaving the block
    stops it if it still runs."""

    def __init__(self, images: Path, endpoint: PageEndpoint, log: Path) -> None:
        self.images = images
        self.endpoint = endpoint
        self.log = log

    def __enter__(self) -> PageReceiver:
        self._daemon = criu_transfer.start_page_server(self.images, self.endpoint, self.log)
        return self

    def finished(self, timeout: float = RECEIVE_TIMEOUT) -> bool:
        """Wait for the page server to end; True when it received a whole dump."""
        return self._wait(timeout)

    def deliver(self, images: Path) -> None:
        """Wait for the whole dump (RECEIVE_TIMEOUT), then move its pages into `images`: give it
        as RestoreOptions.complete_images to restore the archive of the other images. Raises
        AmberError when the page server failed or the pages do not fit those images."""
        if not self.finished():
            raise AmberError(
                f"the page server on {self.endpoint} did not receive the whole dump",
                hint=f"see its log: {self.log}; the source container is left running",
                details=criu.log_errors(self.log),
            )
        criu_transfer.merge_received(self.images, images)


class LazyReceiver(_Receiver):
    """The destination's `criu lazy-pages` daemon for a lazy restore from `images` whose work
    directory is `work` (the restore must use the same one), fetching pages from `source`.

    Start it (context manager) before the lazy restore; `served(timeout)` says whether every
    page arrived (it ends when the source has sent the last one)."""

    def __init__(self, images: Path, work: Path, source: PageEndpoint, log: Path) -> None:
        self.images = images
        self.work = work
        self.source = source
        self.log = log

    def __enter__(self) -> LazyReceiver:
        self._daemon = criu_transfer.start_lazy_pages(self.images, self.work, self.source, self.log)
        return self

    def served(self, timeout: float = RECEIVE_TIMEOUT) -> bool:
        """Wait for the daemon to end; True when every page arrived."""
        return self._wait(timeout)


__all__ = ["LazyReceiver", "MemoryMode", "PageEndpoint", "PageReceiver", "check_host", "dump_to_page_server"]
