"""Bounded work on the real stack: a sparse file never becomes gigabytes in memory or on disk, and
an archive never expands past max_unpacked_size, nor past what its manifest declares in memory."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from amber.engine import scratch
from amber.errors import ExitCode
from amber.models import Status
from tests import hostile_corpus as hc
from tests.conftest import Amber
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above

pytestmark = pytest.mark.root

SPARSE = "truncate -s 3G /tmp/sparse && echo made > /tmp/made && sleep 600"


def _shm_used(amber: Amber) -> int:
    base = scratch.shm_base(amber.fresh_engine().layout)
    return sum(f.stat().st_blocks * 512 for f in base.rglob("*") if f.is_file()) if base.is_dir() else 0


def test_a_sparse_file_is_refused_before_any_work(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amber.engine.containers.run(demo_image, ["sh", "-c", SPARSE], name="sparse", runtime_name=runtime)
    c = amber.fresh_engine().containers.store.get("sparse")
    made = amber.engine.containers.paths(c.id).upper / "tmp" / "made"
    deadline = time.monotonic() + 30
    while not made.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    archive = tmp_path / "sparse.tar"
    capsys.readouterr()
    assert amber("checkpoint", "-e", str(archive), "sparse") == ExitCode.PRECONDITION
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and "/tmp/sparse is a sparse file" in err, err
    assert not archive.exists() and _shm_used(amber) == 0
    assert list((amber.root / "tmp").iterdir()) == []
    assert amber.fresh_engine().containers.inspect_record("sparse").status == Status.RUNNING
    # Without its filesystem the checkpoint is small, and works.
    assert amber("checkpoint", "-e", str(archive), "--ignore-rootfs", "sparse") == 0
    assert archive.stat().st_size < 64 << 20


def test_an_archive_past_max_unpacked_size_is_refused(
    amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_counter(amber, demo_image, "crun")
    base = tmp_path / "base.tar"
    assert amber("checkpoint", "-e", str(base), "-c", "none", "cnt") == 0
    ctx = hc.Ctx(hc.read_entries(base), tmp_path / "sentinel")
    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as out:
        for chunk in hc.zero_bomb_chunks(ctx, 2 << 30, declare=(2 << 30) + 4096):  # honest
            out.write(chunk)
    assert bomb.stat().st_size < 16 << 20  # a small download...
    config = tmp_path / "amber.toml"
    config.write_text('[engine]\nmax_unpacked_size = "1G"\n')
    root = ["--config", str(config)]
    capsys.readouterr()
    free = os.statvfs(amber.root).f_bavail
    assert (
        amber(*root, "restore", "-i", str(bomb), "--name", "bomb") == ExitCode.BAD_ARCHIVE
    )  # ...that expands to 2 GiB
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and "1073741824 bytes allowed" in err, err
    assert os.statvfs(amber.root).f_bavail >= free - (64 << 20) // os.statvfs(amber.root).f_frsize
    assert [x.name for x in amber.fresh_engine().containers.list(all_containers=True)] == ["cnt"]
    assert _shm_used(amber) == 0 and list((amber.root / "tmp").iterdir()) == []
    # The base archive itself restores under the same limit.
    assert amber("rm", "-f", "cnt") == 0
    assert amber(*root, "restore", "-i", str(base)) == 0
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))


def test_bad_max_unpacked_size_is_a_usage_error(
    amber: Amber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "amber.toml"
    config.write_text('[engine]\nmax_unpacked_size = "lots"\n')
    capsys.readouterr()
    assert amber("--config", str(config), "ps") == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "max_unpacked_size" in err and "hint: " in err
