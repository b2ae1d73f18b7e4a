"""Compression: sniffing, the counting and EOF-guarded streams."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile

import pytest
import zstandard

from amber.adapters.tar.compression import Compression, Counting, EofGuard, open_tar_stream, sniff
from amber.errors import UsageError


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(b"x"), Compression.GZIP),
        (zstandard.ZstdCompressor().compress(b"x"), Compression.ZSTD),
        (lzma.compress(b"x"), Compression.XZ),
        (bz2.compress(b"x"), Compression.BZIP2),
        (bz2.compress(b""), Compression.BZIP2),
        (b"BZh-not-bzip2".ljust(512, b"\0"), Compression.NONE),  # a plain tar's first member name
        (b"etc/", Compression.NONE),
    ],
)
def test_sniff(data: bytes, kind: Compression) -> None:
    assert sniff(data[:16]) is kind


def test_parse_accepts_only_writable() -> None:
    assert Compression.parse("ZSTD") is Compression.ZSTD
    with pytest.raises(UsageError):
        Compression.parse("xz")


@pytest.mark.parametrize("pack", [bytes, gzip.compress, bz2.compress, lzma.compress])
def test_open_tar_stream_reads_every_kind(pack: object) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("a")
        ti.size = 3
        tar.addfile(ti, io.BytesIO(b"abc"))
    data = pack(buf.getvalue())  # type: ignore[operator]
    with open_tar_stream(io.BytesIO(data)) as plain:
        assert plain.read() == buf.getvalue()


def test_counting_hashes_and_guard_stops() -> None:
    c = Counting(io.BytesIO(b"hello"), hashed=True)
    assert io.BufferedReader(c).read() == b"hello" and c.count == 5
    assert c.sha is not None and c.sha.hexdigest().startswith("2cf24dba")
    guard = EofGuard(io.BytesIO(b""), limit=2)
    buf = bytearray(4)
    assert guard.readinto(buf) == 0 and guard.readinto(buf) == 0
    with pytest.raises(EOFError):
        guard.readinto(buf)
