"""Compressed tar streams: the Compression enum (from formats), magic-byte sniffing,
decompressing readers that count (and hash) what passes, and the guard that stops a reader at
the real end of its data.

Writing supports none, gzip and zstd (podman's three); bzip2 and xz are read only.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import zstandard

from amber.adapters.tar.formats import DEFAULT_LEVELS as DEFAULT_LEVELS  # re-exported: the codecs' callers
from amber.adapters.tar.formats import LEVELS as LEVELS
from amber.adapters.tar.formats import WRITABLE as WRITABLE
from amber.adapters.tar.formats import Compression as Compression
from amber.adapters.tar.formats import check_level as check_level
from amber.adapters.tar.zstd_writer import ZstdWriter
from amber.errors import UsageError

CHUNK = 1 << 20
SNIFF_BYTES = 16

# What a broken or truncated (compressed) tar stream raises while being read.
READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
)
_BZIP2_BLOCKS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # first block, or end of stream


def compressor(raw: IO[bytes], kind: Compression, level: int | None = None) -> Any:
    """A writer compressing into `raw` with `level` (None: DEFAULT_LEVELS); `raw` itself for NONE.

    Close it to end the stream (zstd's frame, gzip's trailer); `raw` stays open. zstd is a
    ZstdWriter (data that does not compress goes to a light compressor). Raises UsageError for
    a kind amber cannot write or a level out of its range."""
    if kind not in WRITABLE:
        raise UsageError(f"cannot write {kind} archives", hint="use zstd, gzip or none")
    if kind is Compression.NONE:
        return raw
    check_level(kind, level)
    chosen = DEFAULT_LEVELS[kind] if level is None else level
    if kind is Compression.ZSTD:
        return ZstdWriter(raw, chosen, write_size=CHUNK)
    return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=chosen, mtime=0)


def end_frame(writer: Any) -> None:
    """End the zstd frame `writer` (a compressor's) is in and write it out; the next write
    starts a new one. Readers see one stream across frames."""
    writer.flush(zstandard.FLUSH_FRAME)


def sniff(head: bytes) -> Compression:
    """The compression of a stream starting with `head` (give SNIFF_BYTES bytes when available).

    bzip2 needs its block magic too: a plain tar may well begin with a member named `BZh...`.
    """
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Compression.ZSTD
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] in _BZIP2_BLOCKS:
        return Compression.BZIP2
    return Compression.NONE


def sniff_file(path: Path) -> Compression:
    """The compression of a file, from its magic bytes. Raises OSError when it cannot be read."""
    with path.open("rb") as f:
        return sniff(f.read(SNIFF_BYTES))


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def _read_into(src: Readable | IO[bytes], view: Any) -> int:
    """Fill `view` from `src` once (readinto when it has one); the number of bytes read."""
    readinto = getattr(src, "readinto", None)
    if readinto is not None:
        return int(readinto(view) or 0)
    data = src.read(len(view))
    view[: len(data)] = data
    return len(data)


class Counting(io.RawIOBase):
    """A raw stream over `src` that counts (and, with `hashed`, sha256-hashes) every byte read."""

    def __init__(self, src: Readable | IO[bytes], *, hashed: bool = False) -> None:
        super().__init__()
        self.src = src
        self.sha = hashlib.sha256() if hashed else None
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        n = _read_into(self.src, view)
        if self.sha is not None:
            self.sha.update(view[:n])
        self.count += n
        return n


class EofGuard(io.RawIOBase):
    """Stops a tar reader at the real end of a stream.

    In stream mode tarfile skips a member by reading as many bytes as its header claims, and
    keeps calling read() after the data has ended: a header claiming 1 PiB would spin for ever.
    After a few empty reads in a row this raises EOFError (the stream is truncated).
    """

    def __init__(self, inner: Readable | IO[bytes], limit: int = 16) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.empty = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any, /) -> int:
        n = _read_into(self.inner, b)
        if not n:
            self.empty += 1
            if self.empty > self.limit:
                raise EOFError("the data ends before the archive's headers say it does")
            return 0
        self.empty = 0
        return n


def guarded(stream: Readable | IO[bytes]) -> io.BufferedReader:
    """`stream`, buffered, behind an EofGuard: what every streaming tar reader should read."""
    return io.BufferedReader(EofGuard(stream), CHUNK)


def decompressor(stream: IO[bytes], kind: Compression, *, zstd_read_size: int | None = None) -> Any:
    """A reader of the decompressed bytes of `stream` (returned as is for NONE); close it after.

    zstd reads `zstd_read_size` compressed bytes at a time (default: zstd's recommended input
    size, 128 KiB, for readers that stop early). Corrupt data surfaces as READ_ERRORS when read."""
    if kind is Compression.GZIP:
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if kind is Compression.ZSTD:
        size = zstd_read_size or zstandard.DECOMPRESSION_RECOMMENDED_INPUT_SIZE
        return zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=size, read_across_frames=True, closefd=False
        )
    if kind is Compression.BZIP2:
        return bz2.BZ2File(stream, "rb")
    if kind is Compression.XZ:
        return lzma.LZMAFile(stream, "rb")
    return stream


@contextlib.contextmanager
def open_tar_stream(src: Readable | IO[bytes]) -> Iterator[io.BufferedReader]:
    """The uncompressed tar bytes of `src` (compression sniffed), buffered and EOF-guarded.

    Read errors and corrupt compressed data surface as READ_ERRORS."""
    buffered = io.BufferedReader(Counting(src), CHUNK)
    kind = sniff(buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    if kind is Compression.NONE:
        yield guarded(buffered)
        return
    with contextlib.closing(decompressor(buffered, kind, zstd_read_size=CHUNK)) as dec:
        yield guarded(dec)
