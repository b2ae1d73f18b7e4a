"""The page-server move's tee (engine/migrate_pages.py): the dump's stream reaches both page
servers, only the destination's answers come back."""

from __future__ import annotations

import socket
import threading

import pytest

from amber.engine.migrate import MigrateOptions, SshDest
from amber.engine.migrate_pages import PageTee
from amber.engine.transfer import PageEndpoint
from amber.errors import PreconditionError, UsageError


class FakeServer:
    """A page server that keeps what it is sent and answers `reply` once the sender is done."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.received = b""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = PageEndpoint("127.0.0.1", int(self._listener.getsockname()[1]))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            while chunk := conn.recv(65536):
                self.received += chunk
            conn.sendall(self.reply)
        self._listener.close()

    def join(self) -> None:
        self._thread.join(10)


def test_tee_copies_the_dump_to_both_and_answers_with_the_destinations() -> None:
    remote, local = FakeServer(b"remote-ack"), FakeServer(b"local-ack")
    tee = PageTee(remote.endpoint, local.endpoint)
    payload = bytes(range(256)) * 10000
    with socket.create_connection((tee.endpoint.host, tee.endpoint.port), timeout=10) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    tee.close()
    remote.join()
    local.join()
    assert remote.received == payload and local.received == payload
    assert answer == b"remote-ack"
    assert tee.error is None


def test_tee_fails_the_dump_when_the_destination_is_not_there() -> None:
    local = FakeServer(b"")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        absent = PageEndpoint("127.0.0.1", int(s.getsockname()[1]))
    tee = PageTee(absent, local.endpoint)
    with socket.create_connection((tee.endpoint.host, tee.endpoint.port), timeout=10) as client:
        assert client.recv(1) == b""  # closed: CRIU's dump fails, the container runs on
    tee.close()
    assert isinstance(tee.error, OSError)


def test_lazy_mode_checks_the_host_before_anything_is_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    from amber.adapters import criu_transfer

    monkeypatch.setattr(criu_transfer, "pipe_max_size", lambda: 1048576)
    with pytest.raises(PreconditionError, match="fs.pipe-max-size >= 4194304"):
        MigrateOptions(SshDest("h"), mode="lazy").validate()
    MigrateOptions(SshDest("h"), mode="page-server").validate()  # no such need


def test_lazy_mode_refuses_keep() -> None:
    with pytest.raises(UsageError, match="--keep cannot be used with --mode lazy"):
        MigrateOptions(SshDest("h"), mode="lazy", keep_checkpoint=True).validate()
