"""Moving a big member's data on two threads: the bytes arrive whole, errors of either side stop both."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path
from typing import IO, cast

import pytest
import zstandard

from amber.adapters.tar import copying
from amber.errors import ArchiveError
from tests.unit.adapters.tar.helpers import plain_tar

SIZE = copying.OVERLAP_FROM + 12345  # above the threshold, not a whole number of chunks


def _data() -> bytes:
    return os.urandom(1 << 16) * (SIZE // (1 << 16)) + os.urandom(SIZE % (1 << 16))


def test_overlapped_copy_of_a_zstd_stream_is_whole(tmp_path: Path) -> None:
    data = _data()
    frame = zstandard.ZstdCompressor(level=1).compress(data)
    src = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame), read_across_frames=True)
    seen: list[str] = []

    def spy() -> None:
        seen.extend(t.name for t in threading.enumerate())

    class Spying(io.RawIOBase):
        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            spy()
            return int(src.readinto(b))

    out_path = tmp_path / "pages-1.img"
    with out_path.open("wb", buffering=0) as out:
        assert isinstance(out, io.FileIO)
        copying._pump(Spying(), out, SIZE, "a.tar.zst", "checkpoint/pages-1.img")
    assert out_path.read_bytes() == data
    assert "amber-unpack" in seen  # it was read on the second thread
    assert not any(t.name == "amber-unpack" for t in threading.enumerate())


def test_a_short_stream_is_reported_as_truncated(tmp_path: Path) -> None:
    src = io.BytesIO(_data()[: SIZE // 2])
    with (tmp_path / "out").open("wb", buffering=0) as out, pytest.raises(ArchiveError, match="truncated in member"):
        assert isinstance(out, io.FileIO)
        copying._pump(src, out, SIZE, "a.tar", "checkpoint/pages-1.img")


def test_corrupt_data_is_reported_with_the_readers_error(tmp_path: Path) -> None:
    frame = bytearray(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(_data()))
    frame[len(frame) // 2] ^= 0xFF
    src = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(frame)), read_across_frames=True)
    with (tmp_path / "out").open("wb", buffering=0) as out, pytest.raises(ArchiveError, match="corrupt in member"):
        assert isinstance(out, io.FileIO)
        copying._pump(src, out, SIZE, "a.tar.zst", "checkpoint/pages-1.img")


def test_a_failed_write_stops_the_reader(tmp_path: Path) -> None:
    class Full(io.FileIO):
        def write(self, b: object) -> int:
            raise OSError(28, "No space left on device")

    with Full(tmp_path / "out", "wb") as out, pytest.raises(OSError, match="No space"):
        copying._pump(io.BytesIO(_data()), out, SIZE, "a.tar", "checkpoint/pages-1.img")
    assert not any(t.name == "amber-unpack" for t in threading.enumerate())


@pytest.mark.parametrize("how", ["stream", "file", "zstd"])
@pytest.mark.parametrize("read", ["all", "part", "none"])
def test_a_diverted_member_is_read_in_place_and_the_rest_still_lands(tmp_path: Path, how: str, read: str) -> None:
    """extract's `divert`: the handler reads the member's bytes straight from the archive (as
    much as it likes: the rest is skipped), the following members are written as usual, and
    the member's size counts against the limit."""
    from amber.adapters.tar.extract import extract
    from amber.adapters.tar.headers import open_tar
    from amber.adapters.tar.policy import Policy

    big = os.urandom(300_000)
    raw = plain_tar([("a", b"first"), ("diff.tar", big), ("b", b"after")])
    archive = tmp_path / "x.tar"
    archive.write_bytes(zstandard.ZstdCompressor().compress(raw) if how == "zstd" else raw)
    got: list[bytes] = []

    def handler(data: IO[bytes]) -> None:
        want = {"all": -1, "part": 1000, "none": 0}[read]
        got.append(data.read(want) if want else b"")

    dest = tmp_path / "out"
    with archive.open("rb") as f:
        source: IO[bytes] | tarfile.TarFile = f
        if how == "file":
            source = open_tar(f, "x.tar", stream=False)
        elif how == "zstd":
            source = cast("IO[bytes]", zstandard.ZstdDecompressor().stream_reader(f))
        done = extract(source, dest, Policy(), archive="x.tar", divert={"diff.tar": handler})
    assert got == [{"all": big, "part": big[:1000], "none": b""}[read]]
    assert not (dest / "diff.tar").exists()
    assert (dest / "a").read_bytes() == b"first" and (dest / "b").read_bytes() == b"after"
    assert done.written == ["a", "diff.tar", "b"] and done.size == len(big) + 10
    with archive.open("rb") as f, pytest.raises(ArchiveError, match="more than the 1000 bytes allowed"):
        source = cast("IO[bytes]", zstandard.ZstdDecompressor().stream_reader(f)) if how == "zstd" else f
        extract(source, tmp_path / "o2", Policy(max_total_size=1000), archive="x.tar", divert={"diff.tar": handler})


def test_a_diverted_member_cut_short_is_a_truncated_archive(tmp_path: Path) -> None:
    from amber.adapters.tar.extract import extract
    from amber.adapters.tar.policy import Policy

    raw = plain_tar([("diff.tar", os.urandom(100_000))])
    archive = tmp_path / "cut.tar"
    archive.write_bytes(raw[:60_000])
    with archive.open("rb") as f, pytest.raises(ArchiveError, match="truncated"):
        extract(
            f,
            tmp_path / "o",
            Policy(),
            archive="cut.tar",
            divert={"diff.tar": lambda data: None if data.read() else None},
        )
