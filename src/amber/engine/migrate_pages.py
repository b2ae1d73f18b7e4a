"""`amber migrate --mode page-server`, the source's side: the pages go to the destination's page
server during the dump, and a copy of them to a page server here, so that a move that fails after
the freeze can still resume the source from its kept images (the hand-off guarantee).

CRIU's dump connects to one page server: amber's tee listens here (127.0.0.1), forwards the
dump's stream to the destination's page server and its answers back, and writes the same stream
to a local `criu page-server` whose answers it drops. A destination that fails fails the dump
(which then leaves the container running, the checkpoint's guarantee).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from amber import layout
from amber.engine import scratch
from amber.engine.transfer import PageEndpoint, PageReceiver
from amber.errors import AmberError
from amber.layout import Layout

CHUNK = 1 << 20
CONNECT_TIMEOUT = 30.0
IDLE_TIMEOUT = 600.0  # the dump may pause its stream while it walks the container's memory
LOCAL = "127.0.0.1"


def free_port(address: str) -> int:
    """A TCP port free on `address` now."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class PageTee:
    """The dump's page server here: one connection, copied to `remote` and to `local`."""

    def __init__(self, remote: PageEndpoint, local: PageEndpoint) -> None:
        self.remote = remote
        self.local = local
        self.error: BaseException | None = None
        self._listener = socket.create_server((LOCAL, 0))
        self._listener.settimeout(IDLE_TIMEOUT)
        self.endpoint = PageEndpoint(LOCAL, int(self._listener.getsockname()[1]))
        self._thread = threading.Thread(target=self._serve, name="page-tee", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError as exc:
            self.error = exc
            return
        finally:
            self._listener.close()
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            try:
                remote = stack.enter_context(socket.create_connection(astuple(self.remote), CONNECT_TIMEOUT))
                local = stack.enter_context(socket.create_connection(astuple(self.local), CONNECT_TIMEOUT))
            except OSError as exc:
                self.error = exc
                return
            for s in (client, remote, local):
                s.settimeout(IDLE_TIMEOUT)
            back = threading.Thread(target=_pump, args=(remote, [client]), daemon=True)
            drain = threading.Thread(target=_pump, args=(local, []), daemon=True)
            back.start()
            drain.start()
            try:
                _pump(client, [remote, local])
            except OSError as exc:
                self.error = exc
            back.join(IDLE_TIMEOUT)
            drain.join(IDLE_TIMEOUT)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5.0)


def astuple(endpoint: PageEndpoint) -> tuple[str, int]:
    return (endpoint.host, endpoint.port)


def _pump(source: socket.socket, sinks: list[socket.socket]) -> None:
    """Copy `source` to every sink until it ends, then end their writing side. Raises OSError."""
    try:
        while chunk := source.recv(CHUNK):
            for sink in sinks:
                sink.sendall(chunk)
    finally:
        for sink in sinks:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


class SourcePages:
    """The copy of the pages kept here during a page-server move (see the module)."""

    def __init__(self, rx: PageReceiver, tee: PageTee) -> None:
        self._rx = rx
        self.tee = tee

    @property
    def endpoint(self) -> PageEndpoint:
        """Where the dump sends its pages (the tee)."""
        return self.tee.endpoint

    def restore_into(self, images: Path) -> None:
        """Put the kept copy of the pages into the source's kept `images`. Raises AmberError
        when the local page server did not receive the whole dump."""
        self._rx.deliver(images)


@contextlib.contextmanager
def page_receiver(where: Layout, need: int, endpoint: PageEndpoint) -> Iterator[PageReceiver]:
    """A CRIU page server on `endpoint`, its `need` bytes of pages in a scratch directory of
    amber's `where` (removed when the block ends): on tmpfs when they fit, as the archive's
    unpacking is, so that the dump's writes, their move into the images and the restore's reads
    (all while the container is frozen) do not go through the disk. Raises AmberError
    (PreconditionError: no CRIU) when it does not come up."""
    work = scratch.work_dir(where, "migrate-pages-", need)
    try:
        with PageReceiver(layout.received_pages(work), endpoint, layout.page_server_log(work)) as rx:
            yield rx
    finally:
        scratch.discard(work)


@contextlib.contextmanager
def source_pages(where: Layout, need: int, remote: PageEndpoint) -> Iterator[SourcePages]:
    """A local page server (page_receiver) and the tee in front of it and of `remote`. Raises
    AmberError when either cannot start."""
    with page_receiver(where, need, PageEndpoint(LOCAL, free_port(LOCAL))) as rx:
        try:
            tee = PageTee(remote, rx.endpoint)
        except OSError as exc:
            raise AmberError(
                f"cannot listen for the dump's pages on {LOCAL}: {exc.strerror or exc}",
                hint="check this host's loopback interface",
            ) from exc
        try:
            yield SourcePages(rx, tee)
        finally:
            tee.close()
