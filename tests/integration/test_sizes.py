"""Bounded work on the real stack: a sparse file stays sparse (never gigabytes in memory or on disk), and
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

SPARSE = "truncate -s 3G /tmp/sparse && echo tail >> /tmp/sparse && echo made > /tmp/made && sleep 600"
SPARSE_SIZE = (3 << 30) + 5


def _shm_used(amber: Amber) -> int:
    base = scratch.shm_base(amber.fresh_engine().layout)
    return sum(f.stat().st_blocks * 512 for f in base.rglob("*") if f.is_file()) if base.is_dir() else 0


def _sparse_container(amber: Amber, demo_image: str, runtime: str) -> Path:
    """A container holding /tmp/sparse, 3 GiB of holes and 5 bytes: its path in the upper dir."""
    amber.engine.containers.run(demo_image, ["sh", "-c", SPARSE], name="sparse", runtime_name=runtime)
    c = amber.fresh_engine().containers.store.get("sparse")
    upper = amber.engine.containers.paths(c.id).upper / "tmp"
    deadline = time.monotonic() + 30
    while not (upper / "made").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return upper / "sparse"


def test_a_sparse_file_stays_sparse_at_checkpoint_and_restore(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    sparse = _sparse_container(amber, demo_image, runtime)
    assert sparse.stat().st_size == SPARSE_SIZE
    archive = tmp_path / "sparse.tar"
    free = os.statvfs(amber.root).f_bavail * os.statvfs(amber.root).f_frsize
    assert amber("checkpoint", "-e", str(archive), "sparse") == 0
    assert archive.stat().st_size < 64 << 20  # its data, not 3 GiB
    assert _shm_used(amber) == 0 and list((amber.root / "tmp").iterdir()) == []
    assert amber("rm", "-f", "sparse") == 0
    assert amber("restore", "-i", str(archive)) == 0
    c = amber.fresh_engine().containers.store.get("sparse")
    assert amber.fresh_engine().containers.inspect_record("sparse").status == Status.RUNNING
    back = amber.engine.containers.paths(c.id).upper / "tmp" / "sparse"
    st = back.stat()
    assert st.st_size == SPARSE_SIZE and st.st_blocks * 512 < 1 << 20, (st.st_size, st.st_blocks)
    with open(back, "rb") as f:
        f.seek(3 << 30)
        assert f.read() == b"tail\n"
    now = os.statvfs(amber.root).f_bavail * os.statvfs(amber.root).f_frsize
    assert now > free - (256 << 20)  # the container's image and the archive, not 3 GiB dense
    assert _shm_used(amber) == 0 and list((amber.root / "tmp").iterdir()) == []


def test_a_sparse_file_past_max_unpacked_size_is_refused_before_any_work(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sparse_container(amber, demo_image, runtime)
    config = tmp_path / "amber.toml"
    config.write_text('[engine]\nmax_unpacked_size = "1G"\n')
    archive = tmp_path / "sparse.tar"
    capsys.readouterr()
    assert amber("--config", str(config), "checkpoint", "-e", str(archive), "sparse") == ExitCode.PRECONDITION
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and "holes included" in err, err
    assert not archive.exists() and _shm_used(amber) == 0
    assert list((amber.root / "tmp").iterdir()) == []
    assert amber.fresh_engine().containers.inspect_record("sparse").status == Status.RUNNING
    # An archive made under the default limit is refused by a restore under the lower one
    assert amber("checkpoint", "-e", str(archive), "sparse") == 0
    assert amber("rm", "-f", "sparse") == 0
    capsys.readouterr()
    assert amber("--config", str(config), "restore", "-i", str(archive)) == ExitCode.BAD_ARCHIVE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and "1073741824 bytes allowed" in err, err
    assert amber.fresh_engine().containers.list(all_containers=True) == []
    assert _shm_used(amber) == 0 and list((amber.root / "tmp").iterdir()) == []
    # Without its filesystem the checkpoint is small, and works.
    assert amber("restore", "-i", str(archive)) == 0
    assert amber("--config", str(config), "checkpoint", "-e", str(archive), "--ignore-rootfs", "sparse") == 0
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
