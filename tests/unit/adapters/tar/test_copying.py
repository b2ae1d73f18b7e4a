"""Moving a big member's data on two threads: the bytes arrive whole, errors of either side stop both."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
import zstandard

from amber.adapters.tar import copying
from amber.errors import ArchiveError

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
