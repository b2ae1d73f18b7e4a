"""The source's relay between the destination's `criu lazy-pages` and this host's lazy CRIU.

CRIU's lazy page server takes a connection that simply ends as a transfer that went well: it then
kills the container's tasks. Were the destination to fail after its daemon connected but before
it reported the container running, the container would be lost on both hosts. So CRIU listens on
loopback only and the destination connects to this relay, which forwards both ways; until
`commit()` (the destination runs the container) the end of the destination's side is held back,
and `abort()` reaches CRIU as a request cut short, which fails the transfer: CRIU then resumes
the tasks here. A destination that fetched every page before the source heard "running" has its
end passed on at `commit()`; one that failed (no commit comes) makes CRIU resume the tasks.
The daemon sends only fixed-size requests (page_server_iov, 24 bytes), so the relay knows where
one would be cut.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from amber.adapters.criu_transfer import PageEndpoint

REQUEST = 24  # sizeof(struct page_server_iov): u32 cmd, u32 nr_pages, u64 vaddr, u64 dst_id
CHUNK = 1 << 20
ACCEPT_TIMEOUT = 600.0  # the destination connects once its restore handed over the memory
CONNECT_TIMEOUT = 10.0


class LazyRelay:
    """Listens on `address` (a free port: `endpoint`) for one connection, forwarded to `criu`."""

    def __init__(self, address: str, criu: PageEndpoint) -> None:
        self.criu = criu
        self._listener = socket.create_server((address, 0))
        self._listener.settimeout(ACCEPT_TIMEOUT)
        self.endpoint = PageEndpoint(address, int(self._listener.getsockname()[1]))
        self._lock = threading.Lock()
        self._committed = False
        self._decided = threading.Event()  # commit() or abort() was called
        self._done = False  # CRIU's side ended (passed on or broken)
        self._upstream: socket.socket | None = None  # to CRIU
        self._downstream: socket.socket | None = None  # from the destination
        self._forwarded = 0  # bytes of requests passed to CRIU
        self._thread = threading.Thread(target=self._serve, name="lazy-relay", daemon=True)
        self._thread.start()

    def commit(self) -> None:
        """The destination runs the container: from now on its end is CRIU's end, as without a relay."""
        with self._lock:
            self._committed = True
        self._decided.set()

    def abort(self) -> None:
        """Fail CRIU's transfer (it resumes the tasks), whether or not the destination connected."""
        self._decided.set()
        with self._lock:
            downstream, self._downstream = self._downstream, None
        with contextlib.suppress(OSError):
            self._listener.close()
        if downstream is not None:
            with contextlib.suppress(OSError):
                downstream.shutdown(socket.SHUT_RDWR)
        self._break()

    def close(self) -> None:
        """Stop listening (after the transfer); a relay still forwarding goes on until its ends close."""
        with contextlib.suppress(OSError):
            self._listener.close()

    def _serve(self) -> None:
        try:
            down, _ = self._listener.accept()
        except OSError:  # closed (abort, close) or nobody came: CRIU's side is decided elsewhere
            return
        finally:
            with contextlib.suppress(OSError):
                self._listener.close()
        try:
            up = socket.create_connection((self.criu.host, self.criu.port), timeout=CONNECT_TIMEOUT)
        except OSError:
            down.close()
            return
        up.settimeout(None)
        down.settimeout(None)
        with self._lock:
            self._upstream, self._downstream = up, down
        back = threading.Thread(target=self._pages, args=(up, down), name="lazy-relay-pages", daemon=True)
        back.start()
        self._requests(down, up)
        back.join()
        for s in (up, down):
            s.close()

    def _requests(self, down: socket.socket, up: socket.socket) -> None:
        """The destination's requests to CRIU; their end is CRIU's end only once committed."""
        buf = bytearray(CHUNK)
        while True:
            try:
                n = down.recv_into(buf)
            except OSError:
                n = 0
            if not n:
                break
            with self._lock:  # the count stays true for _break, which takes the same lock
                if self._done:
                    return
                try:
                    up.sendall(memoryview(buf)[:n])
                except OSError:
                    return
                self._forwarded += n
        self._decided.wait(ACCEPT_TIMEOUT)  # its end is CRIU's end only if it ran the container
        with self._lock:
            committed = self._committed
        if not committed:
            self._break()
            return
        with self._lock:
            self._done = True
        with contextlib.suppress(OSError):
            up.shutdown(socket.SHUT_WR)

    def _pages(self, up: socket.socket, down: socket.socket) -> None:
        """CRIU's answers (the pages) to the destination, until CRIU ends."""
        buf = bytearray(CHUNK)
        with contextlib.suppress(OSError):
            while n := up.recv_into(buf):
                down.sendall(memoryview(buf)[:n])
        with contextlib.suppress(OSError):
            down.shutdown(socket.SHUT_WR)

    def _break(self) -> None:
        """CRIU reads a request cut short: "Can't read pagemap from socket", the transfer fails."""
        with self._lock:
            if self._done:
                return
            self._done = True
            up, whole = self._upstream, self._forwarded % REQUEST == 0
        with contextlib.suppress(OSError):
            if up is None:  # nobody connected yet: say it to CRIU directly
                up = socket.create_connection((self.criu.host, self.criu.port), timeout=CONNECT_TIMEOUT)
                whole = True
            if whole:
                up.sendall(b"\0")
            up.shutdown(socket.SHUT_WR)
            if self._upstream is None:
                up.close()


__all__ = ["LazyRelay"]
