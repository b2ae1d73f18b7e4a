"""`amber restore --import -`: an archive read once from stdin (a pipe) or, through the library,
from a socket -- the same checks as a file, and nothing left behind by a stream cut short."""

from __future__ import annotations

import os
import pty
import socket
import sys
import threading
from pathlib import Path

import pytest

from amber import Engine
from amber.adapters.checkpoint_archive import read_head
from amber.engine import scratch
from amber.errors import ArchiveError, ExitCode
from amber.models import Status
from tests.conftest import FIXTURES, Amber, mounts_under
from tests.integration.streams import piped_stdin
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above

pytestmark = pytest.mark.root


def _checkpointed(amber: Amber, image: str, runtime: str, tmp_path: Path, compress: str) -> tuple[Path, int]:
    start_counter(amber, image, runtime)
    archive = tmp_path / f"cnt.{compress}.tar"
    assert amber("checkpoint", "--export", str(archive), "--compress", compress, "cnt") == 0
    value = counter(amber, "cnt")
    assert amber("rm", "-f", "cnt") == 0
    return archive, value


def assert_nothing_left(amber: Amber, cid: str) -> None:
    engine = amber.fresh_engine()
    assert engine.containers.list(all_containers=True) == []
    assert mounts_under(amber.root) == [] and mounts_under(amber.runroot) == []
    cdir = amber.root / "containers"
    assert not cdir.exists() or os.listdir(cdir) == []
    for work in (engine.layout.tmp, scratch.shm_base(engine.layout)):
        assert not work.exists() or os.listdir(work) == [], f"left in {work}: {os.listdir(work)}"
    assert list(Path("/sys/fs/cgroup").glob(f"*/amber/amber-*{cid}")) == []
    assert list(Path("/sys/fs/cgroup").glob(f"amber/amber-*{cid}*")) == []


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_restore_from_a_pipe(
    amber: Amber, demo_image: str, runtime: str, compress: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, at_checkpoint = _checkpointed(amber, demo_image, runtime, tmp_path, compress)
    with piped_stdin(monkeypatch, archive):
        assert amber("restore", "--import", "-", "--name", "piped") == ExitCode.OK
    c = amber.fresh_engine().containers.store.get("piped")
    assert c.status == Status.RUNNING and c.runtime == runtime and c.restored
    restored = counter(amber, "piped")
    assert restored >= at_checkpoint > 3  # it goes on from its value
    wait_counter_above(amber, "piped", restored)


@pytest.mark.parametrize("fixture", ["counter-crun.tar.zst", "counter-runc.tar"])
def test_podman_archive_from_a_pipe(
    amber: Amber, fixture: str, monkeypatch: pytest.MonkeyPatch, podman_network: str
) -> None:
    """podman puts artifacts/ and devshm-checkpoint.tar before its metadata: they are spooled."""
    assert amber("image", "import", str(FIXTURES / "busybox-rootfs.tar"), "localhost/busybox:fixture") == 0
    with piped_stdin(monkeypatch, FIXTURES / fixture):
        assert amber("restore", "--import", "-") == ExitCode.OK
    name = read_head(FIXTURES / fixture).config["name"]
    c = amber.fresh_engine().containers.store.get(str(name))
    assert c.status == Status.RUNNING and c.runtime == fixture.split("-")[1].split(".")[0]
    value = counter(amber, c.name)
    assert value > 1
    wait_counter_above(amber, c.name, value)


@pytest.mark.parametrize("cut", [0.03, 0.5, 0.97])
def test_truncated_stream_leaves_nothing(
    amber: Amber,
    demo_image: str,
    runtime: str,
    cut: float,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    archive, _ = _checkpointed(amber, demo_image, runtime, tmp_path, "zstd")
    data = archive.read_bytes()
    capfd.readouterr()
    with piped_stdin(monkeypatch, data[: int(len(data) * cut)]):
        rc = amber("restore", "--import", "-")
    err = capfd.readouterr().err
    assert rc == ExitCode.BAD_ARCHIVE, err
    assert "<stdin>" in err and "hint:" in err and "Traceback" not in err
    assert_nothing_left(amber, str(read_head(archive).config["id"]))
    # and the whole archive still restores after
    with piped_stdin(monkeypatch, archive):
        assert amber("restore", "--import", "-") == ExitCode.OK


def test_terminal_is_refused(amber: Amber, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    parent, child = pty.openpty()
    try:
        monkeypatch.setattr(sys, "stdin", open(child, closefd=False))  # noqa: SIM115 - closed below
        capfd.readouterr()
        assert amber("restore", "--import", "-") == ExitCode.USAGE
        assert "terminal" in capfd.readouterr().err
    finally:
        sys.stdin.close()
        monkeypatch.undo()
        os.close(parent)
        os.close(child)


def test_engine_restores_from_a_socket(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    """What `amber migrate` uses: Engine.restore_archive given a socket's reader."""
    archive, at_checkpoint = _checkpointed(amber, demo_image, runtime, tmp_path, "zstd")
    data = archive.read_bytes()
    engine = Engine(root=amber.root, runroot=amber.runroot)
    for payload, ok in ((data[: len(data) // 2], False), (data, True)):
        a, b = socket.socketpair()
        sender = threading.Thread(target=lambda s=a, p=payload: (s.sendall(p), s.close()), daemon=True)
        sender.start()
        with b, b.makefile("rb") as reader:
            if ok:
                c = engine.restore_archive(reader, name="sock")
            else:
                with pytest.raises(ArchiveError, match="truncated"):
                    engine.restore_archive(reader, name="sock")
        sender.join(timeout=60)
        if not ok:
            assert_nothing_left(amber, str(read_head(archive).config["id"]))
    assert c.status == Status.RUNNING and c.name == "sock"
    assert counter(amber, "sock") >= at_checkpoint
