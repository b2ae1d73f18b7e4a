"""The source's lazy relay (engine/lazy_relay.py) between a fake destination daemon and a fake
CRIU lazy page server: until commit, the destination's end reaches CRIU as a request cut short
(CRIU then fails the transfer and resumes the tasks); after commit, as the clean end it is."""

from __future__ import annotations

import socket
import threading
import time

from amber.adapters.criu_transfer import PageEndpoint
from amber.engine.lazy_relay import REQUEST, LazyRelay

REQ = b"r" * REQUEST  # one page request
PAGES = b"p" * 100_000  # CRIU's answer


class FakeCriu:
    """Takes one connection, answers PAGES, keeps what it read until the end."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = PageEndpoint("127.0.0.1", int(self.listener.getsockname()[1]))
        self.received = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.listener.close()
        with conn:
            conn.settimeout(30)
            conn.sendall(PAGES)
            while chunk := conn.recv(65536):
                self.received += chunk

    def wait_for(self, n: int) -> None:
        """Until CRIU has read `n` bytes of requests (the relay forwards them on its own thread)."""
        deadline = time.monotonic() + 30
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def result(self) -> bytes:
        self._thread.join(30)
        assert not self._thread.is_alive()
        return self.received


def _daemon(relay: LazyRelay, requests: bytes) -> bytes:
    """The destination's daemon: sends its requests, reads the pages, ends its side."""
    with socket.create_connection((relay.endpoint.host, relay.endpoint.port), timeout=30) as s:
        s.sendall(requests)
        got = b""
        while len(got) < len(PAGES):
            got += s.recv(65536)
        s.shutdown(socket.SHUT_WR)
        return got


def test_after_commit_the_end_is_clean() -> None:
    criu = FakeCriu()
    relay = LazyRelay("127.0.0.1", criu.endpoint)
    relay.commit()
    assert _daemon(relay, REQ * 3) == PAGES
    assert criu.result() == REQ * 3  # whole requests, then the end: CRIU's transfer went well
    relay.close()


def test_a_daemon_that_ends_before_commit_waits_for_it() -> None:
    criu = FakeCriu()
    relay = LazyRelay("127.0.0.1", criu.endpoint)
    assert _daemon(relay, REQ * 2) == PAGES  # every page fetched before the source heard "running"
    relay.commit()
    assert criu.result() == REQ * 2


def test_an_end_without_commit_is_a_request_cut_short() -> None:
    criu = FakeCriu()
    relay = LazyRelay("127.0.0.1", criu.endpoint)
    assert _daemon(relay, REQ * 2) == PAGES
    criu.wait_for(len(REQ * 2))  # the pages came back before the relay passed both requests on
    relay.abort()  # the destination failed before it ran the container
    got = criu.result()
    assert got.startswith(REQ * 2) and len(got) % REQUEST != 0  # CRIU: "Can't read pagemap from socket"


def test_abort_before_the_destination_connected() -> None:
    criu = FakeCriu()
    relay = LazyRelay("127.0.0.1", criu.endpoint)
    relay.abort()
    assert len(criu.result()) % REQUEST != 0
