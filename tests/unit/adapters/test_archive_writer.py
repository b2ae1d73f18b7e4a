"""Writing archives to a stream (`checkpoint --export -`, migration) and compression levels."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import zstandard

from amber.adapters import checkpoint_archive as ca
from amber.adapters.tar.compression import DEFAULT_LEVELS, LEVELS, check_level, compressor
from amber.config import Settings
from amber.engine.checkpoint import CheckpointOptions
from amber.errors import UsageError
from tests.conftest import drop_page_cache

HEAD = {
    ca.AMBER_MANIFEST: b'{"schema_version": 1}',
    ca.CONFIG_DUMP: json.dumps({"id": "a" * 64, "name": "c1", "runtime": "crun"}).encode(),
    ca.SPEC_DUMP: b'{"ociVersion": "1.0.0"}',
}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    (b / "checkpoint").mkdir(parents=True)
    (b / "checkpoint" / "inventory.img").write_bytes(b"inv")
    (b / "checkpoint" / "pages-1.img").write_bytes(os.urandom(1 << 20) + b"text " * 100_000)
    (b / "stats-dump").write_bytes(b"stats")
    return b


class Pipe(io.RawIOBase):
    """A write end whose reader goes away after `limit` bytes (EPIPE, as a closed pipe gives)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.got = 0

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        n = len(memoryview(b))  # type: ignore[arg-type]
        if self.got + n > self.limit:
            raise BrokenPipeError(32, "Broken pipe")
        self.got += n
        return n


@pytest.mark.parametrize("comp", [ca.Compression.ZSTD, ca.Compression.GZIP, ca.Compression.NONE])
def test_stream_holds_what_the_file_holds(bundle: Path, tmp_path: Path, comp: ca.Compression) -> None:
    out = io.BytesIO()
    ca.write_archive_stream(out, bundle, ["stats-dump", "checkpoint"], comp, head=HEAD)
    streamed = tmp_path / "streamed.tar"
    streamed.write_bytes(out.getvalue())
    filed = tmp_path / "filed.tar"
    ca.write_archive(filed, bundle, ["stats-dump", "checkpoint"], comp, head=HEAD)
    assert [m.name for m in ca.list_members(streamed)] == [m.name for m in ca.list_members(filed)]
    assert ca.read_head(streamed).compression is comp
    dest = tmp_path / "x"
    dest.mkdir()
    ca.extract_archive(streamed, dest)
    assert (dest / "checkpoint" / "pages-1.img").read_bytes() == (bundle / "checkpoint" / "pages-1.img").read_bytes()
    assert not out.closed  # flushed, not closed: the caller owns the stream


def test_stream_that_breaks_raises_oserror(bundle: Path) -> None:
    with pytest.raises(BrokenPipeError):
        ca.write_archive_stream(
            io.BufferedWriter(Pipe(64 << 10)), bundle, ["checkpoint"], ca.Compression.NONE, head=HEAD
        )


def test_levels_change_size_and_stay_readable(bundle: Path, tmp_path: Path) -> None:
    text = b"".join(b"line %08d: the quick brown fox jumps over the lazy dog\n" % i for i in range(40_000))
    (bundle / "checkpoint" / "pages-1.img").write_bytes(text)
    sizes = {}
    for level in (1, 19):
        dest = tmp_path / f"{level}.tar.zst"
        sizes[level] = ca.write_archive(dest, bundle, ["checkpoint"], ca.Compression.ZSTD, head=HEAD, level=level)
        assert ca.read_head(dest).config["name"] == "c1"
    assert sizes[19] < sizes[1]


def test_level_ranges() -> None:
    for kind, levels in LEVELS.items():
        assert DEFAULT_LEVELS[kind] in levels
        check_level(kind, levels.start)
        check_level(kind, levels.stop - 1)
        with pytest.raises(UsageError, match="out of range"):
            check_level(kind, levels.stop)
    with pytest.raises(UsageError, match="no compression level"):
        check_level(ca.Compression.NONE, 3)
    check_level(ca.Compression.NONE, None)
    with pytest.raises(UsageError, match="cannot write"):
        compressor(io.BytesIO(), ca.Compression.XZ)


def test_default_zstd_level_is_the_documented_one() -> None:
    raw = io.BytesIO()
    w = compressor(raw, ca.Compression.ZSTD)
    w.write(b"x" * 1000)
    w.close()
    params = zstandard.get_frame_parameters(raw.getvalue())
    assert params.content_size in (zstandard.CONTENTSIZE_UNKNOWN, 1000)
    assert DEFAULT_LEVELS[ca.Compression.ZSTD] == 3  # README "Speed" gives the measurements behind it


def test_tuned_levels_reach_podmans_size_on_repeating_text() -> None:
    """Memory pages of numbered text lines (the benchmark's): level 3 as amber runs it (podman's
    8 MiB window) is at least 10% smaller than libzstd's own level 3, which left amber's archives
    25% larger than podman's."""
    line = b": the quick brown fox jumps over the lazy dog\n"
    data = b"".join(b"line %08d" % n + line for n in range(300_000))  # 17 MiB
    plain = zstandard.ZstdCompressor(level=3, threads=-1).compress(data)
    raw = io.BytesIO()
    w = compressor(raw, ca.Compression.ZSTD, 3)
    w.write(data)
    w.close()
    assert zstandard.get_frame_parameters(raw.getvalue()).window_size == 1 << 23
    assert len(raw.getvalue()) < 0.9 * len(plain)
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw.getvalue())).read() == data


def test_options_for_streams_and_levels() -> None:
    stream = io.BytesIO()
    CheckpointOptions(export_to=stream, compress_level=5).validate(1)
    with pytest.raises(UsageError, match="not both"):
        CheckpointOptions(export=Path("/tmp/x"), export_to=stream).validate(1)
    with pytest.raises(UsageError, match="exactly one container"):
        CheckpointOptions(export_to=stream).validate(2)
    with pytest.raises(UsageError, match="exactly one container"):
        CheckpointOptions(export_to=stream).validate(None)  # --all
    with pytest.raises(UsageError, match="only be used with --export"):
        CheckpointOptions(compress_level=3).validate(1)
    with pytest.raises(UsageError, match="out of range"):
        CheckpointOptions(export_to=stream, compress_level=20).validate(1)
    with pytest.raises(UsageError, match="no compression level"):
        CheckpointOptions(export_to=stream, compression=ca.Compression.NONE, compress_level=1).validate(1)
    assert CheckpointOptions(export_to=stream).exporting
    assert "stream" in CheckpointOptions(export_to=stream).destination


def test_config_compress_level(tmp_path: Path) -> None:
    conf = tmp_path / "amber.toml"
    conf.write_text("[engine]\ncompress_level = 7\n")
    assert Settings.load(config_file=str(conf)).compress_level == 7
    conf.write_text('[engine]\ncompress_level = "fast"\n')
    with pytest.raises(UsageError, match="compress_level"):
        Settings.load(config_file=str(conf))
    conf.write_text("[engine]\n")
    assert Settings.load(config_file=str(conf)).compress_level is None


def _resident_pages(path: Path) -> int:
    """How many of `path`'s pages are in the page cache (mincore on a mapping of it)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            assert libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec)


def test_writeback_keeps_the_archive_in_the_page_cache(tmp_path: Path) -> None:
    """Early writeback must not drop what it wrote: a restore right after an export reads the
    archive from memory (POSIX_FADV_DONTNEED, used before, sent a 1 GiB import to the disk)."""
    from amber.adapters.archive_writer import _writeback
    from amber.adapters.writeback import sync_file_range

    start = sync_file_range()
    assert start is not None, "libc has sync_file_range on Linux"
    path = tmp_path / "archive.tar"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        with _writeback(fd, every=0.01):
            os.write(fd, os.urandom(1 << 20))
            os.fsync(fd)  # every page clean: DONTNEED would now drop them all
            assert start(fd, 0, 0) == 0
    finally:
        os.close(fd)
    assert _resident_pages(path) == (1 << 20) // 4096


def test_files_not_in_the_page_cache_are_archived_whole(tmp_path: Path) -> None:
    """A big file that is not cached (one long unread, say) is read past the page cache
    (TarWriter._data_past_cache): the archive still holds every byte, at an unaligned offset too."""
    b = tmp_path / "cold"
    (b / "checkpoint").mkdir(parents=True)
    (b / "checkpoint" / "inventory.img").write_bytes(b"inv")
    data = os.urandom((3 << 20) + 4097)
    page = b / "checkpoint" / "pages-1.img"
    page.write_bytes(data)
    drop_page_cache(page)
    assert _resident_pages(page) < 64
    out = io.BytesIO()
    ca.write_archive_stream(out, b, ["checkpoint"], ca.Compression.NONE, head=HEAD)
    streamed = tmp_path / "cold.tar"
    streamed.write_bytes(out.getvalue())
    dest = tmp_path / "x"
    dest.mkdir()
    ca.extract_archive(streamed, dest)
    assert (dest / "checkpoint" / "pages-1.img").read_bytes() == data
