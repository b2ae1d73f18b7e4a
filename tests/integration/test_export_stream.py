"""`checkpoint --export -` on the real stack, under runc and crun: the archive on stdout and nothing
else, a reader that goes away mid-stream (the container is left as it was), compression levels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amber.adapters.checkpoint_archive import list_members, read_head
from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import Amber
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above

pytestmark = pytest.mark.root


def amber_process(amber: Amber, *argv: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot), *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def checkpoint_to_pipe(amber: Amber, dest: Path, *argv: str) -> tuple[int, str]:
    """`amber checkpoint --export - ARGV`, its stdout copied by this test to `dest` as it comes."""
    proc = amber_process(amber, "checkpoint", "--export", "-", *argv)
    assert proc.stdout is not None and proc.stderr is not None
    with dest.open("wb") as out:
        while chunk := proc.stdout.read(1 << 16):
            out.write(chunk)
    err = proc.stderr.read().decode()
    return proc.wait(120), err


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_export_to_stdout_then_import(
    amber: Amber, demo_image: str, runtime: str, compress: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar"
    code, err = checkpoint_to_pipe(amber, archive, "--compress", compress, "cnt")
    assert code == 0, err
    assert err.strip() == "cnt"  # the name goes to stderr: stdout carries the archive only
    assert amber.fresh_engine().containers.store.get("cnt").status == Status.CHECKPOINTED
    at_checkpoint = counter(amber, "cnt")
    head = read_head(archive)
    assert head.compression == compress and head.config["runtime"] == runtime
    names = [m.name for m in list_members(archive)]
    assert names[:3] == ["amber.manifest", "config.dump", "spec.dump"]
    assert "checkpoint/inventory.img" in names and "rootfs-diff.tar" in names
    assert amber("rm", "-f", "cnt") == 0
    assert amber("restore", "--import", str(archive)) == 0
    c = amber.fresh_engine().containers.store.get("cnt")
    assert c.status == Status.RUNNING and c.runtime == runtime
    wait_counter_above(amber, "cnt", at_checkpoint)


def test_checkpoint_piped_into_restore(amber: Amber, demo_image: str, runtime: str) -> None:
    """`amber checkpoint --export - cnt | amber restore --import - --name twin`: no file anywhere."""
    start_counter(amber, demo_image, runtime)
    ckpt = amber_process(amber, "checkpoint", "--export", "-", "cnt")
    assert ckpt.stdout is not None and ckpt.stderr is not None
    cmd = [sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot)]
    restore = subprocess.Popen(
        [*cmd, "restore", "--import", "-", "--name", "twin"], stdin=ckpt.stdout, stderr=subprocess.PIPE
    )
    ckpt.stdout.close()  # the restore holds the read end now
    assert ckpt.wait(120) == 0, ckpt.stderr.read().decode()
    assert restore.wait(120) == 0, restore.stderr.read().decode() if restore.stderr else ""
    at_checkpoint = counter(amber, "cnt")
    engine = amber.fresh_engine()
    assert engine.containers.inspect_record("cnt").status == Status.CHECKPOINTED
    twin = engine.containers.inspect_record("twin")
    assert twin.status == Status.RUNNING and twin.runtime == runtime
    wait_counter_above(amber, "twin", at_checkpoint)


@pytest.mark.parametrize("leave_running", [False, True])
def test_reader_gone_mid_stream_container_left_running(
    amber: Amber, demo_image: str, runtime: str, leave_running: bool
) -> None:
    start_counter(amber, demo_image, runtime)
    # 8 MiB the compressor cannot shrink: far more than the pipe and the buffers hold
    assert amber("exec", "cnt", "sh", "-c", "head -c 8388608 /dev/urandom > /big") == 0
    proc = amber_process(amber, "checkpoint", "--export", "-", *(["-R"] if leave_running else []), "cnt")
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(4096)) == 4096  # the archive has begun; then the reader goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) == ExitCode.ERROR, err
    assert err.startswith("error: ") and "the stream is incomplete" in err and "hint: " in err
    assert "Traceback" not in err and "Exception ignored" not in err
    c = amber.fresh_engine().containers.inspect_record("cnt")
    assert c.status == Status.RUNNING
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))  # counting: neither stopped nor frozen
    tmp = amber.root / "tmp"
    assert not tmp.is_dir() or list(tmp.iterdir()) == []  # the work area is gone


def test_compress_levels(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, runtime)
    sizes = {}
    for level in ("1", "19"):
        archive = tmp_path / f"cnt-{level}.tar.zst"
        assert amber("checkpoint", "-R", "--export", str(archive), "--compress-level", level, "cnt") == 0
        assert read_head(archive).compression == "zstd"
        sizes[level] = archive.stat().st_size
    assert sizes["19"] < sizes["1"]
    gz = tmp_path / "cnt.tar.gz"
    assert amber("checkpoint", "-R", "-e", str(gz), "-c", "gzip", "--compress-level", "9", "cnt") == 0
    assert read_head(gz).compression == "gzip"
    # levels a compression does not have are refused before anything is frozen
    assert amber("checkpoint", "-R", "-e", str(tmp_path / "x.tar"), "--compress-level", "20", "cnt") == ExitCode.USAGE
    assert amber("checkpoint", "-R", "-e", str(gz), "-c", "gzip", "--compress-level", "10", "cnt") == ExitCode.USAGE
    assert amber("checkpoint", "-R", "-e", str(gz), "-c", "none", "--compress-level", "3", "cnt") == ExitCode.USAGE
    assert amber("checkpoint", "-R", "--compress-level", "3", "cnt") == ExitCode.USAGE
    assert not (tmp_path / "x.tar").exists()
    assert amber("rm", "-f", "cnt") == 0
    assert amber("restore", "--import", str(tmp_path / "cnt-19.tar.zst")) == 0
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING
    assert os.path.getsize(gz) > 0
