"""Sparse files: TarWriter writes a file with holes as a GNU sparse member (PAX 1.0), the extractor
writes its holes back as holes, from a seekable file and from a stream; GNU tar reads what amber
writes, and amber reads what GNU tar writes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from amber.adapters import rootfs_diff
from amber.adapters.tar.extract import extract
from amber.adapters.tar.policy import Policy
from amber.adapters.tar.writer import TarWriter, data_ranges, stored_size
from amber.errors import ArchiveError

GIB = 1 << 30


def _sparse_file(path: Path, size: int, chunks: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in chunks.items():
            f.seek(offset)
            f.write(data)


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "src"
    top.mkdir()
    _sparse_file(top / "big", 3 * GIB, {GIB: b"x" * 10000, 2 * GIB: b"end"})  # 3 GiB, 3 data blocks
    _sparse_file(top / "tail-hole", 100 << 20, {0: b"a" * 5000})
    _sparse_file(top / "all-hole", 100 << 20, {})
    (top / "dense").write_bytes(b"hello")
    return top


def _write(top: Path, out: Path) -> None:
    with open(out, "wb") as f:
        w = TarWriter(f, zero_copy=True)
        for name in sorted(os.listdir(top)):
            w.add(str(top / name), name)
        w.close()


def _same(a: Path, b: Path) -> None:
    assert a.stat().st_size == b.stat().st_size
    assert _allocated(b) <= _allocated(a) + (64 << 10), (b, _allocated(a), _allocated(b))
    assert subprocess.run(["cmp", str(a), str(b)], check=False).returncode == 0, b


def test_data_ranges(tree: Path) -> None:
    with open(tree / "big", "rb") as f:
        ranges = data_ranges(f.fileno(), 3 * GIB)
        assert ranges is not None and ranges[-1] == (3 * GIB, 0)
        assert sum(n for _, n in ranges) < 1 << 20
        assert stored_size(f.fileno(), os.fstat(f.fileno())) == sum(n for _, n in ranges)
    with open(tree / "dense", "rb") as f:
        assert data_ranges(f.fileno(), 5) is None
    with open(tree / "all-hole", "rb") as f:
        assert data_ranges(f.fileno(), 100 << 20) == [(100 << 20, 0)]


def test_a_sparse_file_costs_its_data_and_comes_back_sparse(tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "t.tar"
    _write(tree, archive)
    assert archive.stat().st_size < 1 << 20  # not 3.2 GiB
    with tarfile.open(archive) as tar:  # Python's own reader agrees
        infos = {ti.name: ti for ti in tar}
        assert infos["big"].size == 3 * GIB and infos["big"].sparse
        assert infos["dense"].sparse is None
        f = tar.extractfile(infos["tail-hole"])
        assert f is not None and f.read(5001) == b"a" * 5000 + b"\0"
    dest = tmp_path / "seekable"
    with open(archive, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        extract(tar, dest, Policy(), archive="t.tar")
    streamed = tmp_path / "streamed"
    with open(archive, "rb") as f:  # a stream (a pipe): read once, in order
        extract(io.BufferedReader(_Unseekable(f)), streamed, Policy(), archive="t.tar")
    for name in ("big", "tail-hole", "all-hole", "dense"):
        _same(tree / name, dest / name)
        _same(tree / name, streamed / name)


class _Unseekable(io.RawIOBase):
    def __init__(self, f: io.BufferedReader) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        return self.f.readinto(b)


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_gnu_tar_reads_amber_and_amber_reads_gnu_tar(tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "amber.tar"
    _write(tree, archive)
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(["tar", "-xSf", str(archive), "-C", str(gnu)], check=True)
    for name in ("big", "tail-hole", "all-hole"):
        _same(tree / name, gnu / name)
    for form in (["--format=posix", "--sparse-version=1.0"], ["--format=posix", "--sparse-version=0.1"], []):
        gnu_archive = tmp_path / "gnu.tar"  # [] is GNU's own format: old GNU sparse headers
        subprocess.run(
            ["tar", "--sparse", *form, "-cf", str(gnu_archive), "-C", str(tree), "big", "tail-hole"], check=True
        )
        back = tmp_path / f"back{len(form)}{form[-1:]}"
        with open(gnu_archive, "rb") as f:
            extract(f, back, Policy(), archive="gnu.tar")
        for name in ("big", "tail-hole"):
            _same(tree / name, back / name)


def test_limits_count_holes_free_space_counts_data(tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "t.tar"
    _write(tree, archive)
    with open(archive, "rb") as f, pytest.raises(ArchiveError, match="expands to more than"):
        extract(f, tmp_path / "d", Policy(max_total_size=GIB), archive="t.tar")
    # 3 GiB apparent onto a destination keeping all but 1 MiB free: only the data needs room
    dest = tmp_path / "roomy"
    dest.mkdir()
    vfs = os.statvfs(dest)
    reserve = vfs.f_bavail * vfs.f_frsize - (1 << 20)
    with open(archive, "rb") as f:
        extract(f, dest, Policy(reserve=reserve), archive="t.tar")
    _same(tree / "big", dest / "big")


def test_measure_upper_counts_apparent_and_stored(tree: Path) -> None:
    size = rootfs_diff.measure_upper(tree)
    assert size.apparent == 3 * GIB + (200 << 20) + 5
    assert size.stored < 1 << 20
