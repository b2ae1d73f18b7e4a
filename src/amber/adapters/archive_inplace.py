"""Archives whose big page image went into the file while CRIU dumped (an export to a regular file).

The archive file is made before the dump (`reserve`), and page_pack puts the first big page image
into it at `data_offset` (D) as CRIU writes it: its bytes, or with zstd its frame. After the dump,
`write_placed` writes what must come first at offset 0 and fills up to D exactly, so that the
image's tar member has its data at D:

- uncompressed: amber's metadata members, the image's directory entries, then the image's PAX
  extended header, whose `comment=` record has the length that ends the header at D. Readers
  ignore `comment` (Go's archive/tar: podman, checkpointctl, containerd; Python's tarfile);
- zstd: one frame of the same tar bytes (without the comment), then a zstd skippable frame
  (magic 0x184D2A50, a 4-byte little-endian length, that many bytes) up to D; every zstd reader
  skips it (libzstd, python-zstandard, Go's klauspost decoder). A skippable frame takes at least
  8 bytes: a gap of 1-7 is filled by making the head longer (a comment record again).

Then the rest of the archive follows the image's data, as write_archive_stream writes it (the
image and its directories passed by). A head that does not fit before D, an image that changed
after CRIU ended, or one the follower could not finish: `write_placed` returns False and the
caller writes the whole archive the usual way over the same file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import struct
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from amber.adapters.page_pack import Placed, Slot
from amber.adapters.tar.compression import Compression
from amber.adapters.tar.writer import TarWriter
from amber.adapters.tar.zstd_writer import zstd_compressor

log = logging.getLogger("amber.archive")

ALIGN = 4096
MIN_DATA_OFFSET = 256 << 10  # room for amber's metadata (a few KiB as a rule) and the headers
MAX_DATA_OFFSET = 1 << 20  # the gap becomes one PAX header: Go's archive/tar reads at most 1 MiB
SKIPPABLE_MAGIC = 0x184D2A50
SKIPPABLE_HEADER = 8
_PAD_TRIES = 64  # head variants tried when a zstd gap of 1-7 bytes is left
# A zstd frame smaller than this is moved down to follow the head instead of being padded to:
# the padding (up to D) would weigh on a small archive (+35% at 64 MiB of text), the move costs
# a copy within the page cache (~10 ms per 32 MiB).
COMPACT_BELOW = 32 << 20


def data_offset(expected_head: int) -> int | None:
    """D for a head of about `expected_head` bytes: twice that, at least MIN_DATA_OFFSET, a
    multiple of ALIGN; None when that would pass MAX_DATA_OFFSET (no in-place archive then)."""
    want = max(MIN_DATA_OFFSET, -(-2 * expected_head // ALIGN) * ALIGN)
    return want if want <= MAX_DATA_OFFSET else None


@dataclasses.dataclass
class Reserved:
    """The archive's temporary file (beside its destination), open before the dump, and D."""

    tmp: Path
    fd: int
    data_offset: int

    @property
    def slot(self) -> Slot:
        return Slot(self.fd, self.data_offset)

    def discard(self) -> None:
        """Close the file; remove it unless it was renamed into place."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def reserve(dest: Path, tmp_dir: Path | None, offset: int) -> Reserved:
    """The temporary file write_archive renames to `dest` (in `tmp_dir`, else beside `dest`)."""
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    return Reserved(Path(tmp), fd, offset)


def _skippable(size: int) -> bytes:
    """A zstd skippable frame of `size` bytes in all (>= SKIPPABLE_HEADER)."""
    return struct.pack("<II", SKIPPABLE_MAGIC, size - SKIPPABLE_HEADER) + bytes(size - SKIPPABLE_HEADER)


def _commented(ti: tarfile.TarInfo, length: int) -> bytes | None:
    """`ti`'s PAX header with a `comment` record making it exactly `length` bytes, or None."""
    if length % tarfile.BLOCKSIZE:
        return None

    def size(n: int) -> int:
        ti.pax_headers = {**ti.pax_headers, "comment": "x" * n}
        return len(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    low, high = 0, length  # the smallest comment whose header reaches `length` (sizes grow with n)
    if size(low) > length or size(high) < length:
        return None
    while low < high:
        mid = (low + high) // 2
        if size(mid) < length:
            low = mid + 1
        else:
            high = mid
    if size(low) != length:
        return None
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: str  # as TarWriter.add_tree names it
    arcname: str


def _entries(bundle: Path, members: Sequence[str | object], image: str) -> list[_Entry] | None:
    """The image's directories (from its member down) and the image itself, or None when it is
    under none of `members`."""
    for member in members:
        if not isinstance(member, str):
            continue
        top = str(bundle / member)
        if image != top and not image.startswith(top + "/"):
            continue
        out = [_Entry(top, member.strip("/"))]
        for part in image[len(top) + 1 :].split("/") if image != top else []:
            out.append(_Entry(f"{out[-1].path}/{part}", f"{out[-1].arcname}/{part}"))
        return out
    return None


def _head_tar(writer: TarWriter, head: Sequence[tuple[str, bytes]], dirs: list[_Entry], mtime: int) -> None:
    for name, data in head:
        writer.add_bytes(name, data, mode=0o600, mtime=mtime)
    for entry in dirs:
        writer.add(entry.path, entry.arcname)


def _zstd_head(tar: bytes, image: tarfile.TarInfo, level: int | None, room: int) -> bytes | None:
    """One frame of `tar` + the image's header, then a skippable frame: `room` bytes, or None."""
    pax = dict(image.pax_headers)
    for attempt in range(_PAD_TRIES):
        if attempt:  # a gap of 1-7 bytes: a longer header (incompressible text) shifts the frame's size
            image.pax_headers = {**pax, "comment": hashlib.sha256(bytes(attempt)).hexdigest()[: attempt * 2]}
        frame = zstd_compressor(level).compress(tar + image.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        gap = room - len(frame)
        if gap < 0:
            return None
        if gap == 0 or gap >= SKIPPABLE_HEADER:
            return frame + (_skippable(gap) if gap else b"")
    return None


def _move_down(raw: IO[bytes], src: int, dst: int, size: int) -> None:
    """Move `size` bytes of `raw`'s file from `src` down to `dst` (< src), chunk by chunk from the
    start: a chunk is read before anything is written over it."""
    raw.flush()
    fd = raw.fileno()
    done = 0
    while done < size:
        chunk = os.pread(fd, min(1 << 20, size - done), src + done)
        if not chunk:
            raise OSError(f"the archive's page frame ends {size - done} bytes early")
        os.pwrite(fd, chunk, dst + done)
        done += len(chunk)


@dataclasses.dataclass(frozen=True)
class Begun:
    """The head is written: the tar offset of the placed member's data, and the paths written."""

    offset: int
    skip: set[str]


def write_placed(
    raw: IO[bytes],
    bundle: Path,
    members: Sequence[str | object],
    compression: Compression,
    *,
    head: Sequence[tuple[str, bytes]],
    placed: Placed,
    level: int | None,
    mtime: int,
) -> Begun | None:
    """Write the head at offset 0 of `raw` (the reserved file) so that `placed`'s member has its
    data where it is, and position `raw` after that data (its stored bytes), for the rest of the
    archive to follow: the placed member's padding first. None, with nothing written, when that
    cannot be done."""
    image = placed.path
    entries = _entries(bundle, members, image)
    try:
        st = os.lstat(image)
    except OSError:
        return None
    if entries is None or st.st_size != placed.size:
        log.debug("archive: %s is not as it was placed; writing it the usual way", image)
        return None
    buf = io.BytesIO()
    head_writer = TarWriter(buf)
    _head_tar(head_writer, head, entries[:-1], mtime)
    ti = head_writer.info(entries[-1].path, entries[-1].arcname, st)
    if ti is None or ti.type != tarfile.REGTYPE or ti.size != placed.size:
        return None
    tar = buf.getvalue()
    if compression is Compression.ZSTD and placed.compressed:
        first = _zstd_head(tar, ti, level, placed.offset)
        offset = len(tar) + len(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    elif compression is Compression.NONE and not placed.compressed:
        header = _commented(ti, placed.offset - len(tar))
        first = None if header is None else tar + header
        offset = placed.offset
    else:
        return None
    if first is None:
        log.debug("archive: the head (%d tar bytes) does not fit before offset %d", len(tar), placed.offset)
        return None
    if compression is Compression.ZSTD and placed.stored < COMPACT_BELOW:
        first = zstd_compressor(level).compress(tar + ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        _move_down(raw, placed.offset, len(first), placed.stored)
        raw.seek(0)
        raw.write(first)
        raw.seek(len(first) + placed.stored)
        log.debug(
            "archive: %s was written in place during the dump, its frame (%d bytes) then moved to follow the head",
            image,
            placed.stored,
        )
        return Begun(offset, {e.path for e in entries})
    raw.seek(0)
    raw.write(first)
    raw.seek(placed.offset + placed.stored)
    log.debug("archive: %s was written in place at %d during the dump (%d bytes)", image, placed.offset, placed.stored)
    return Begun(offset, {e.path for e in entries})


__all__ = ["Begun", "Reserved", "data_offset", "reserve", "write_placed"]
