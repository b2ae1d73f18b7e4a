"""DirectReader, SequentialReader and the page-cache probe, on a file of the disk the suite works
on: each reader test checks that it really read with O_DIRECT, so that a machine where it
silently did not cannot pass for one where it did."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.adapters.direct_io import ALIGN, DirectReader, SequentialReader, in_page_cache
from tests.conftest import drop_page_cache


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
    except OSError as exc:
        pytest.fail(f"{tmp_path} refuses O_DIRECT ({exc}): run the suite with --basetemp on a disk filesystem")
    return tmp_path


@pytest.fixture
def fd_of(disk_dir: Path) -> Iterator[int]:
    fd = os.open(disk_dir / "f", os.O_CREAT | os.O_RDWR, 0o600)
    yield fd
    os.close(fd)


def test_reader_gives_any_range_past_the_page_cache(disk_dir: Path, fd_of: int) -> None:
    data = os.urandom(9 * ALIGN + 77)
    os.write(fd_of, data)
    drop_page_cache(disk_dir / "f")
    assert not in_page_cache(fd_of, 0, len(data))
    for offset, length in [(0, len(data)), (1, 100), (ALIGN - 1, 2 * ALIGN + 5), (512, len(data) - 512)]:
        with DirectReader(fd_of, size=2 * ALIGN) as r:
            assert r.dfd is not None
            got = b"".join(bytes(p) for p in r.read_range(offset, length))
        assert got == data[offset : offset + length]
    with DirectReader(fd_of) as r:  # past the end: what there is, then nothing
        assert b"".join(bytes(p) for p in r.read_range(len(data) - 10, 100)) == data[-10:]
    os.lseek(fd_of, 0, os.SEEK_SET)
    with SequentialReader(fd_of, 3) as s:
        assert s.read() == data[3:]


def test_page_cache_probe_tells_cached_from_not(disk_dir: Path, fd_of: int) -> None:
    os.write(fd_of, os.urandom(64 * ALIGN))
    assert in_page_cache(fd_of, 0, 64 * ALIGN)  # just written: cached
    drop_page_cache(disk_dir / "f")
    assert not in_page_cache(fd_of, 0, 64 * ALIGN)
