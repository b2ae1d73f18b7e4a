"""The lazy dump's state machine (engine/lazy_dump.py) with a fake runtime checkpoint: ready on
the status fd (runc) or on the port listening (crun), a dump that fails before it serves, and the
abort that CRIU's lazy page server takes as a failed transfer (then it resumes the tasks)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from amber.adapters import run as runners
from amber.adapters.criu_transfer import PageEndpoint
from amber.adapters.run import Result
from amber.engine.lazy_dump import BackgroundDump


class FakeLazyServer:
    """CRIU's lazy page server, as far as amber sees it: listens, then serves one connection; a
    request shorter than its header fails the transfer (exit 1), a close at once ends it (0)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = PageEndpoint("127.0.0.1", int(self.listener.getsockname()[1]))
        self.go = threading.Event()
        self.runner: object = None

    def checkpoint(self, status_fd: int | None) -> Result:
        self.runner = runners.current()
        self.go.wait(30)
        self.listener.listen(1)
        if status_fd is not None:
            os.write(status_fd, b"\0")
        conn, _ = self.listener.accept()
        with conn, self.listener:
            data = conn.recv(24)
        return Result(["runc", "checkpoint"], 1 if 0 < len(data) < 24 else 0, "", "")


@pytest.mark.parametrize("status_fd", [True, False])
def test_ready_then_abort_fails_the_transfer(status_fd: bool) -> None:
    server = FakeLazyServer()
    marker = runners.SystemRunner()  # not the default one: it must reach the thread
    with runners.using(marker):
        dump = BackgroundDump(server.checkpoint, server.endpoint, status_fd=status_fd)
    server.go.set()
    assert dump.ready(timeout=30) is None  # serving: the archive goes now
    assert server.runner is marker  # the engine's runner went along into the thread
    dump.abort()
    assert dump.wait(30).returncode == 1  # CRIU: "Lazy pages transfer FAILED", the tasks resume


def test_a_dump_that_fails_before_it_serves_is_its_result() -> None:
    def failing(status_fd: int | None) -> Result:
        return Result(["crun", "checkpoint"], 1, "", "Error (criu/cr-dump.c): Dumping FAILED.")

    dump = BackgroundDump(failing, PageEndpoint("127.0.0.1", 1), status_fd=False)
    ended = dump.ready(timeout=30)
    assert ended is not None and ended.returncode == 1


def test_a_lazy_restore_per_runtime() -> None:
    from amber.adapters.runtime import RuntimeInfo
    from amber.engine.restore_options import RestoreOptions

    def start(images: object, work: object) -> None:
        raise AssertionError("not called here")

    opts = RestoreOptions(tcp_established=True, lazy_pages=start)
    runc, crun = RuntimeInfo("runc", "/usr/bin/runc", "1.1", True), RuntimeInfo("crun", "/usr/bin/crun", "1.21", True)
    assert opts.runtime_opts(runc) == ["--tcp-established", "--lazy-pages"]
    assert opts.criu_config(runc) == ""
    assert opts.runtime_opts(crun) == ["--tcp-established"]  # crun 1.21 has no flag: its CRIU config
    assert opts.criu_config(crun) == "lazy-pages\n"
