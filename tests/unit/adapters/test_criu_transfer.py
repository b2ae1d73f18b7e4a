"""The memory transfer's command lines and CRIU configuration, per runtime (no root needed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from amber.adapters import criu, criu_transfer
from amber.adapters.criu_transfer import PageEndpoint
from amber.adapters.runtime import Runtime, RuntimeInfo
from amber.errors import AmberError, PreconditionError

EP = PageEndpoint("10.0.0.2", 27000)


def runtime(kind: str, tmp_path: Path) -> Runtime:
    return Runtime(RuntimeInfo(kind, f"/usr/bin/{kind}", "1", True), tmp_path / "state")


def test_runc_takes_flags(tmp_path: Path) -> None:
    args, env = runtime("runc", tmp_path).page_server_options(tmp_path, EP)
    assert (args, env) == (["--page-server", "10.0.0.2:27000"], {})
    args, _ = runtime("runc", tmp_path).page_server_options(tmp_path, EP, lazy=True, status_fd=5)
    assert args == ["--lazy-pages", "--page-server", "10.0.0.2:27000", "--status-fd", "5"]
    assert not list(tmp_path.iterdir())  # no configuration file for runc


def test_crun_gets_a_criu_config_in_the_work_dir(tmp_path: Path) -> None:
    args, env = runtime("crun", tmp_path).page_server_options(tmp_path, EP)
    assert args == []
    config = Path(env["CRIU_CONFIG_FILE"])
    assert config.parent == tmp_path and not str(config).startswith("/etc/criu")
    assert config.read_text() == "page-server\naddress 10.0.0.2\nport 27000\n"
    _, env = runtime("crun", tmp_path).page_server_options(tmp_path, EP, lazy=True)
    assert Path(env["CRIU_CONFIG_FILE"]).read_text() == "lazy-pages\naddress 10.0.0.2\nport 27000\n"


def test_destination_daemons_argv(tmp_path: Path) -> None:
    assert criu_transfer.page_server_argv("/sbin/criu", tmp_path, EP) == [
        "/sbin/criu", "page-server", "-D", str(tmp_path), "--address", "10.0.0.2", "--port", "27000",
    ]  # fmt: skip
    argv = criu_transfer.lazy_pages_argv("/sbin/criu", tmp_path / "i", tmp_path / "w", EP)
    assert argv == [
        "/sbin/criu", "lazy-pages", "-D", str(tmp_path / "i"), "-W", str(tmp_path / "w"),
        "--page-server", "--address", "10.0.0.2", "--port", "27000",
    ]  # fmt: skip


def test_listening_sees_a_listening_port_of_this_process() -> None:
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
        assert not criu_transfer.listening(os.getpid(), port)
        s.listen()
        assert criu_transfer.listening(os.getpid(), port)


def test_lazy_preflight_explains_a_low_pipe_max_size(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "pipe-max-size"
    fake.write_text("1048576\n")
    monkeypatch.setattr(criu_transfer, "PIPE_MAX_SIZE", fake)
    monkeypatch.setattr(criu, "version", lambda: (4, 2, 1))
    monkeypatch.setattr(criu_transfer, "uffd_works", lambda: True)
    with pytest.raises(PreconditionError, match="has 1048576") as err:
        criu_transfer.check_lazy_host()
    assert "sysctl -w fs.pipe-max-size=4194304" in (err.value.hint or "")
    criu_transfer.check_lazy_host(raise_pipe_size=True)  # the explicit opt-in
    assert fake.read_text() == "4194304\n"
    monkeypatch.setattr(criu_transfer, "uffd_works", lambda: False)
    with pytest.raises(PreconditionError, match="userfaultfd"):
        criu_transfer.check_lazy_host()
    monkeypatch.setattr(criu, "version", lambda: (4, 1))
    with pytest.raises(PreconditionError, match="CRIU >= 4.2"):
        criu_transfer.check_lazy_host()


def test_precopy_refused_without_dirty_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(criu, "dirty_tracking", lambda: False)
    with pytest.raises(PreconditionError, match="mem_dirty_track"):
        criu_transfer.refuse_precopy()


def test_merge_received_moves_pages_and_refuses_a_clash(tmp_path: Path) -> None:
    received, images = tmp_path / "received", tmp_path / "images"
    received.mkdir()
    images.mkdir()
    (received / "pages-1.img").write_bytes(b"p")
    (received / "pagemap-7.img").write_bytes(b"m")
    assert criu_transfer.merge_received(received, images) == ["pagemap-7.img", "pages-1.img"]
    assert (images / "pages-1.img").read_bytes() == b"p" and not list(received.iterdir())
    (received / "pages-1.img").write_bytes(b"other dump")
    with pytest.raises(AmberError, match="already there"):
        criu_transfer.merge_received(received, images)
    assert (images / "pages-1.img").read_bytes() == b"p"
