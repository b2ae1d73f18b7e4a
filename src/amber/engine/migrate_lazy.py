"""`amber migrate --mode lazy` (post-copy over userfaultfd): what each side adds to the copy flow.

Source: once the destination listens for the archive, the source starts a relay on the address
its stream connection leaves from (engine/lazy_relay.py: in front of CRIU, which listens on
loopback), and says where on the control channel ({"op": "lazy-source", "address", "port"}). It
then checkpoints lazily (engine.lazy_dump): CRIU dumps every image but the memory, the archive of
those goes over the stream as in copy mode, and CRIU serves the pages through the relay while
the container already runs on the destination.

Destination: right before the runtime restores, `criu lazy-pages` starts in the restore's work
directory (LazyPages.start, RestoreOptions.lazy_pages); the restore is lazy (runc --lazy-pages;
crun 1.21 `lazy-pages` in its CRIU configuration file). After "running", the destination waits
for the daemon to end (every page fetched) and reports {"event": "served", "ok", "bytes",
"seconds"}; a transfer that failed loses the container there (it is removed).

The guarantee is weaker than the other modes': until "running" a failure resumes the source (the
lazy dump is called off, CRIU resumes its tasks); after it, the source must stay alive (frozen)
until every page is served. If the source host dies meanwhile, the container is lost.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from amber.adapters import criu_images, criu_memory
from amber.engine.lazy_dump import SERVE_TIMEOUT
from amber.engine.transfer import LazyReceiver, PageEndpoint
from amber.errors import AmberError, UsageError

LOG = "lazy-pages.log"


def source_message(endpoint: PageEndpoint) -> dict[str, Any]:
    """The control message that tells the destination where the pages are served."""
    return {"op": "lazy-source", "address": endpoint.host, "port": endpoint.port}


def source_endpoint(message: dict[str, Any]) -> PageEndpoint:
    """The source's page port from its "lazy-source" message. Raises UsageError for another."""
    if message.get("op") != "lazy-source" or not isinstance(message.get("port"), int):
        raise UsageError(
            "the source did not say where it serves the pages (--mode lazy)",
            hint="run the same amber version on both hosts",
        )
    return PageEndpoint(str(message["address"]), int(message["port"]))


def lazy_bytes(images: Path) -> int:
    """How many bytes of memory the images leave to the lazy transfer (their lazy pages)."""
    d = criu_images.ImageDir(images, str(images))
    total = 0
    with contextlib.suppress(AmberError):
        for task in criu_images.read_processes(d):
            pagemap = criu_memory.read_pagemap(d, task.pid)
            if pagemap is not None:
                total += sum(e.size for e in pagemap.entries if e.flags & criu_memory.PE_LAZY)
    return total


class LazyPages:
    """The destination's `criu lazy-pages` for one lazy restore, fetching from `source`; `scratch`
    holds a copy of the images the report counts (the restore removes its own)."""

    def __init__(self, source: PageEndpoint, stack: contextlib.ExitStack[bool | None], scratch: Path) -> None:
        self.source = source
        self._stack = stack
        self._scratch = scratch
        self._rx: LazyReceiver | None = None
        self._counted: Path | None = None
        self._started = 0.0

    def start(self, images: Path, work: Path) -> None:
        """RestoreOptions.lazy_pages: start the daemon for the restore from `images` whose work
        directory is `work`. Raises AmberError when it does not come up.

        This runs while the container is frozen: the report's byte count is not made here, only
        a copy of the few small images it reads (pstree, pagemaps), counted after "running"."""
        self._scratch.mkdir(parents=True, exist_ok=True)
        counted = Path(tempfile.mkdtemp(prefix="lazy-count-", dir=self._scratch))
        self._stack.callback(shutil.rmtree, counted, ignore_errors=True)
        for image in [images / "pstree.img", *images.glob("pagemap-*.img")]:
            with contextlib.suppress(OSError):  # a missing one: lazy_bytes counts what it can
                shutil.copyfile(image, counted / image.name)
        self._counted = counted
        self._rx = self._stack.enter_context(LazyReceiver(images, work, self.source, work / LOG))
        self._started = time.monotonic()

    def served(self, timeout: float = SERVE_TIMEOUT) -> dict[str, Any]:
        """Wait for every page; the "served" report for the source."""
        ok = self._rx is not None and self._rx.served(timeout)
        seconds = time.monotonic() - self._started
        count = lazy_bytes(self._counted) if self._counted is not None else 0
        report: dict[str, Any] = {"ok": ok, "event": "served", "bytes": count}
        report["seconds"] = round(seconds, 3)
        if not ok:
            report["error"] = f"the lazy transfer of the memory from {self.source} failed"
            report["hint"] = f"see {self._rx.log if self._rx else LOG} on the destination"
        return report


__all__ = ["LazyPages", "lazy_bytes", "source_endpoint", "source_message"]
