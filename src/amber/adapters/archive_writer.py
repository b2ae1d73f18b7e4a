"""Writing checkpoint archives in podman's format (amber's metadata first): to any binary stream
(a pipe, a socket: `checkpoint --export -`, migration) or atomically to a file.

Reading them is in checkpoint_archive, which re-exports these names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from amber.adapters.archive_inplace import Reserved, write_placed
from amber.adapters.page_pack import Packed, Placed
from amber.adapters.podman_format import AMBER_MANIFEST, CONFIG_DUMP, SPEC_DUMP
from amber.adapters.tar.compression import CHUNK, WRITABLE, Compression, check_level, compressor, end_frame
from amber.adapters.tar.progress import Progress, reporting, ticking
from amber.adapters.tar.writer import TarWriter
from amber.adapters.writeback import sync_file_range
from amber.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Streamed:
    """A member made while it is written, of a size known before: `produce(writer)` writes
    exactly `size` bytes into `writer.out` and returns the count (the rootfs diff's nested tar)."""

    name: str
    size: int
    produce: Callable[[TarWriter], int]
    mode: int = 0o644


Member = str | Streamed


def _tree_size(bundle: Path, members: Sequence[Member]) -> int:
    """Bytes of the regular files under `members` (what the tar stream will mostly carry)."""
    total = 0
    for member in members:
        if isinstance(member, Streamed):
            total += member.size
            continue
        top = bundle / member
        if top.is_file():
            total += top.stat().st_size
            continue
        for root, _dirs, files in os.walk(top):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, f)).st_size
    return total


# ===================================== writing ================================================
@contextlib.contextmanager
def _writeback(fd: int, every: float = 0.2) -> Iterator[None]:
    """Keep the kernel writing the archive to disk while we produce it, so the final fsync is short.

    sync_file_range(SYNC_FILE_RANGE_WRITE) starts writeback of the dirty pages without waiting and
    leaves them in the page cache, so that reading the archive right after (a restore on this host,
    a copy to another) does not go to the disk. (POSIX_FADV_DONTNEED, used before, also dropped the
    pages already written: a 1 GiB import after an export then read the disk, 2-3 s more.)
    """
    start = sync_file_range()
    if start is None:
        yield
        return

    def kick() -> None:
        start(fd, 0, 0)  # an error (EIO, ESPIPE) only means no early writeback: the final fsync reports

    with ticking(every, "amber-writeback", kick):
        yield


def write_archive_stream(
    out: IO[bytes],
    bundle: Path,
    members: Sequence[Member],
    compression: Compression,
    *,
    head: Mapping[str, bytes],
    level: int | None = None,
    progress: Progress | None = None,
    packed: Mapping[str, Packed] | None = None,
) -> None:
    """Write a checkpoint archive to the binary stream `out` (a file, a pipe, a socket): `head`
    entries first (amber.manifest, config.dump, spec.dump, then any others; mode 0600), then each
    of `members` (paths under `bundle`, in order; directories walked depth first in byte order;
    missing ones skipped, sockets too; a Streamed one as it is produced), compressed with `level` (None: the default).

    `out` is flushed, not closed. Raises UsageError (compression, level), OSError (reading the
    bundle, writing `out`: the stream is then incomplete). `progress` is called now and then
    with (tar bytes written, about the bytes to write). `packed`: files already compressed (zstd
    only; page_pack), whose frames are put in as they are."""
    _write(out, bundle, members, compression, head=head, level=level, progress=progress, packed=packed)


def _ordered(head: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    first = (AMBER_MANIFEST, CONFIG_DUMP, SPEC_DUMP)
    return [(n, head[n]) for n in first if n in head] + [(n, v) for n, v in head.items() if n not in first]


def _write(
    out: IO[bytes],
    bundle: Path,
    members: Sequence[Member],
    compression: Compression,
    *,
    head: Mapping[str, bytes],
    level: int | None,
    progress: Progress | None,
    packed: Mapping[str, Packed] | None,
    placed: Placed | None = None,
) -> bool:
    """write_archive_stream's work; with `placed` (`out` is the reserved file that image is in
    already), around that image (archive_inplace). False, with nothing written, when the
    archive cannot be made around it."""
    now = int(time.time())
    items = _ordered(head)
    begun = None
    if placed is not None:
        begun = write_placed(out, bundle, members, compression, head=items, placed=placed, level=level, mtime=now)
        if begun is None:
            return False
    packer = compressor(out, compression, level)

    def insert(frame: Path) -> None:
        end_frame(packer)
        _copy_raw(frame, out)

    writer = TarWriter(
        packer,
        zero_copy=compression is Compression.NONE and _is_file(out),
        packed=packed if compression is Compression.ZSTD else None,
        insert=insert,
    )
    total = (_tree_size(bundle, members) + sum(len(v) for v in head.values())) if progress else 0
    with reporting(progress, total, lambda: writer.offset):
        if begun is None:
            for name, data in items:
                writer.add_bytes(name, data, mode=0o600, mtime=now)
        else:
            assert placed is not None
            writer.offset = begun.offset
            writer.data_elsewhere(placed.size)
            writer.skip = begun.skip
        for member in members:
            if isinstance(member, Streamed):
                writer.add_stream(member.name, member.size, member.produce, mode=member.mode, mtime=now)
                continue
            path = bundle / member
            if os.path.lexists(path):
                writer.add_tree(str(path), member.strip("/"))
        writer.close()
        if packer is not out:
            packer.close()  # ends the zstd frame / gzip trailer; `out` stays open
        out.flush()
        if begun is not None:
            out.truncate()  # a frame moved down leaves the reserved file longer than the archive
    return True


def _copy_raw(src: Path, out: IO[bytes]) -> None:
    """Append the bytes of file `src` to `out` as they are: in the kernel when `out` has a file
    descriptor (sendfile), else through a buffer."""
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        done = 0
        try:
            fd = out.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fd = -1
        if fd >= 0:
            out.flush()
            try:
                while done < size:
                    n = os.sendfile(fd, f.fileno(), done, size - done)
                    if n == 0:
                        break
                    done += n
            except OSError as exc:
                if done or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
        f.seek(done)
        while chunk := f.read(CHUNK):
            out.write(chunk)


def _is_file(out: IO[bytes]) -> bool:
    """Is `out` a regular file (copy_file_range can write into it)?"""
    try:
        return stat.S_ISREG(os.fstat(out.fileno()).st_mode)
    except (OSError, AttributeError, io.UnsupportedOperation):
        return False


def write_archive(
    dest: Path,
    bundle: Path,
    members: Sequence[Member],
    compression: Compression,
    *,
    head: Mapping[str, bytes],
    tmp_dir: Path | None = None,
    level: int | None = None,
    progress: Progress | None = None,
    packed: Mapping[str, Packed] | None = None,
    reserved: Reserved | None = None,
    placed: Placed | None = None,
) -> int:
    """Write a checkpoint archive atomically, as write_archive_stream lays it out.

    The archive is written to a temporary file beside `dest` (or in `tmp_dir`, which must be on
    the same filesystem), synced, then renamed: it appears whole or not at all. Returns its size.
    Raises UsageError (compression, level), OSError (reading the bundle, writing the file).

    `reserved`: that temporary file, made before the dump (archive_inplace; the caller discards
    it after); `placed`: the page image page_pack put into it already. The archive is written
    around that image, or, when it cannot be, over it the usual way."""
    if compression not in WRITABLE:
        raise UsageError(f"cannot write {compression} archives", hint="use zstd, gzip or none")
    check_level(compression, level)
    if reserved is None:
        fd, name = tempfile.mkstemp(dir=tmp_dir or dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        tmp = Path(name)
    else:
        fd, tmp = reserved.fd, reserved.tmp
    try:
        with open(fd, "wb", buffering=CHUNK, closefd=reserved is None) as raw, _writeback(raw.fileno()):
            args = (raw, bundle, members, compression)
            if placed is None or not _write(
                *args, head=head, level=level, progress=progress, packed=packed, placed=placed
            ):
                raw.seek(0)
                raw.truncate()  # what page_pack put in place, if anything
                _write(*args, head=head, level=level, progress=progress, packed=packed)
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return dest.stat().st_size


__all__ = ["Member", "Streamed", "write_archive", "write_archive_stream"]
