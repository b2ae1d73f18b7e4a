"""A lazy dump (post-copy, `amber migrate --mode lazy`): the runtime's checkpoint dumps every
image but the memory, then CRIU keeps the container's tasks frozen and serves their pages from
this host on a TCP port until the destination's `criu lazy-pages` has fetched the last one; only
then does the runtime's checkpoint return (and the tasks die).

So the checkpoint runs in a background thread (BackgroundDump): the engine waits until CRIU
serves (runc writes a byte on its --status-fd; crun 1.21 has no status fd, so the port
listening is the sign), writes the archive of the other images, and asks the caller
(LazySource.hand_off) whether the destination runs the container. Until it does, the dump can
be called off (`abort`): a malformed request on the page port makes CRIU's lazy page server fail,
and CRIU then resumes the tasks here, where they never stopped running in amber's records.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import select
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters import criu, netlock
from amber.adapters import podman_format as fmt
from amber.adapters.criu_transfer import PageEndpoint, listening
from amber.adapters.run import Result
from amber.engine import recovery
from amber.engine.timing import timed
from amber.errors import AmberError
from amber.models import Container

if TYPE_CHECKING:
    from amber.engine.containers import ContainerService

READY_TIMEOUT = 600.0  # the dump itself (it writes every image but the memory)
SERVE_TIMEOUT = 3600.0  # every page fetched by the destination, after it ran the container
ABORT_TIMEOUT = 60.0  # CRIU resuming the tasks after the abort
POLL = 0.02


@dataclasses.dataclass(frozen=True)
class LazySource:
    """What a lazy checkpoint needs from its caller: where CRIU serves the pages here (the
    destination connects to it), and `hand_off`, called once the archive is written: it
    returns when the destination runs the container, and raises (the dump is then called off,
    the container resumes here) when it does not."""

    endpoint: PageEndpoint
    hand_off: Callable[[], None]
    serve_timeout: float = SERVE_TIMEOUT
    abort: Callable[[], None] | None = None  # fails CRIU's transfer (default: a short request to its port)


class BackgroundDump:
    """The runtime's lazy checkpoint, run by `start(status_fd)` in a thread of its own."""

    def __init__(
        self,
        start: Callable[[int | None], Result],
        endpoint: PageEndpoint,
        *,
        status_fd: bool,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._abort = abort
        self._result: Result | None = None
        self._error: BaseException | None = None
        self._ready_r, ready_w = os.pipe() if status_fd else (-1, -1)
        self._ready_w = ready_w
        context = contextvars.copy_context()  # the engine's runner (adapters.run.using) goes along
        self._thread = threading.Thread(
            target=context.run, args=(self._run, start, ready_w if status_fd else None), name="lazy-dump", daemon=True
        )
        self._thread.start()

    def _run(self, start: Callable[[int | None], Result], status_fd: int | None) -> None:
        try:
            self._result = start(status_fd)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, raised there
            self._error = exc

    def ready(self, timeout: float = READY_TIMEOUT) -> Result | None:
        """Wait until CRIU serves the pages (None), or the checkpoint ended first (its Result: a
        failed dump, which left the container running). Raises what the checkpoint raised, or
        AmberError when neither happens within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self._thread.is_alive():
                    return self.wait(0)
                if self._ready_r >= 0:
                    if select.select([self._ready_r], [], [], POLL)[0] and os.read(self._ready_r, 1):
                        return None
                elif listening(os.getpid(), self.endpoint.port):
                    return None
                else:
                    time.sleep(POLL)
        finally:
            self._close_status()
        self.abort()
        raise AmberError(
            f"CRIU did not start serving the container's pages on port {self.endpoint.port} within {timeout:g} s",
            hint="see the dump's log (dump.log in the container's bundle); the container was resumed",
        )

    def abort(self) -> None:
        """Call the dump off: CRIU's lazy page server fails on a short request, and resumes the
        tasks. Harmless when the dump has ended. (Once the destination connected, only the
        LazySource's own `abort`, a relay in between, can still do this.)"""
        if self._abort is not None:
            self._abort()
            return
        with contextlib.suppress(OSError), socket.create_connection(astuple(self.endpoint), timeout=5.0) as s:
            s.sendall(b"\0")  # shorter than CRIU's request header: "Can't read pagemap from socket"

    def wait(self, timeout: float) -> Result:
        """The checkpoint's Result once it ended. Raises what it raised, or AmberError when it
        still runs after `timeout` seconds."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AmberError(
                f"the lazy checkpoint still serves pages on port {self.endpoint.port} after {timeout:g} s",
                hint="the destination has not fetched every page; see the dump's log (dump.log)",
            )
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _close_status(self) -> None:
        for fd in (self._ready_r, self._ready_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ready_r = self._ready_w = -1


def serve(
    containers: ContainerService,
    c: Container,
    work: Path,
    lazy: BackgroundDump,
    source: LazySource,
    *,
    tcp_established: bool,
) -> None:
    """The archive of `c` is written: hand off (the caller hears whether the destination runs it),
    then wait until CRIU has served every page (the tasks here end then). Raises the hand-off's
    error with the dump called off (the container resumed here), or AmberError when the
    transfer failed after the destination ran it."""
    try:
        source.hand_off()
    except BaseException:
        call_off(containers, c, work, lazy, tcp_established=tcp_established)
        raise
    with timed("lazy pages served"):
        res = lazy.wait(source.serve_timeout)
    if res.returncode != 0:
        recovery.thaw(containers, c)
        kept = _keep_log(containers, c, work)
        raise AmberError(
            f"the lazy transfer of container {c.name}'s memory failed after the destination ran it"
            + ("; CRIU resumed it here" if _runs(containers, c) else "; it is not running here either"),
            hint=f"the whole CRIU log is in {kept}",
            details=criu.log_errors(kept) if kept.is_file() else [],
        )


def call_off(
    containers: ContainerService, c: Container, work: Path, lazy: BackgroundDump, *, tcp_established: bool
) -> None:
    """Call the lazy dump of `c` off: CRIU resumes the tasks (amber lifts the network lock CRIU
    leaves in place on that path). Raises AmberError when the container does not run again."""
    lazy.abort()
    with contextlib.suppress(AmberError):
        lazy.wait(ABORT_TIMEOUT)
    recovery.thaw(containers, c)
    netns = containers.paths(c.id).netns
    if tcp_established and netns.exists():
        with contextlib.suppress(AmberError, OSError):
            netlock.unlock(netns)
    if not _runs(containers, c):
        kept = _keep_log(containers, c, work)
        raise AmberError(
            f"the lazy checkpoint of container {c.name} was called off, but CRIU did not resume it",
            hint=f"start it again: amber start {c.name}; the CRIU log is in {kept}",
            details=criu.log_errors(kept) if kept.is_file() else [],
        )


def _keep_log(containers: ContainerService, c: Container, work: Path) -> Path:
    """CRIU's dump log, copied from the work directory (discarded later) into the bundle."""
    kept = containers.paths(c.id).dump_log
    with contextlib.suppress(OSError):
        shutil.copyfile(work / fmt.DUMP_LOG, kept)
    return kept


def _runs(containers: ContainerService, c: Container) -> bool:
    st = containers.runtime_state(c)
    return st is not None and st.running


def astuple(endpoint: PageEndpoint) -> tuple[str, int]:
    return (endpoint.host, endpoint.port)


__all__ = ["BackgroundDump", "LazySource", "call_off", "serve"]
