"""Checkpoint archives in podman's format: detect, read the head, list, extract, write.

Podman writes (in order) artifacts/, devshm-checkpoint.tar, config.dump, spec.dump, network.status,
stats-dump, ctr.log, checkpoint/, rootfs-diff.tar, deleted.files, volumes/*.tar. amber writes its
own amber.manifest, then config.dump and spec.dump first, so that `read_head` only reads a few
kilobytes; the rest follows podman's order. Every reader streams: no archive is ever held whole
in memory nor decompressed to disk first.
"""

from __future__ import annotations

import bz2
import contextlib
import enum
import gzip
import io
import json
import lzma
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from amber.adapters import safe_tar
from amber.adapters.podman_format import (
    AMBER_MANIFEST,
    CHECKPOINT_DIR,
    CONFIG_DUMP,
    CTR_LOG,
    DELETED_FILES,
    DEVSHM,
    INVENTORY,
    NETWORK_STATUS,
    ROOTFS_DIFF,
    SPEC_DUMP,
    STATS_DUMP,
    AmberManifest,
    ConfigDump,
)
from amber.errors import ArchiveError, NotFoundError, UsageError

MAX_DUMP_SIZE = 16 << 20  # config.dump, spec.dump
MAX_MANIFEST_SIZE = 1 << 20
ZSTD_LEVEL = 1  # measured: 1 GiB in 1.3 s on 2 cores (level 3: 2.8 s); podman uses about 3
GZIP_LEVEL = 6  # Go's gzip default, podman's
_MAGIC = {b"\x1f\x8b\x08": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"  # read only
    XZ = "xz"  # read only

    @classmethod
    def parse(cls, value: str) -> Compression:
        """A compression the user may choose for writing (podman's three), case-insensitive."""
        low = value.lower()
        if low in ("gzip", "none", "zstd"):
            return cls(low)
        raise UsageError(
            f'selected compression algorithm ("{value}") not supported. Please select one from: gzip, none, zstd',
            hint="zstd is the default and the fastest",
        )


class MemberType(enum.StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    OTHER = "other"


@dataclass(frozen=True)
class MemberInfo:
    name: str  # as in the archive, without a leading "./" or trailing "/"
    size: int
    type: MemberType
    mode: int
    linkname: str = ""


@dataclass(frozen=True)
class ArchiveHead:
    """The metadata at the front of an archive, typed: config.dump, spec.dump, amber.manifest."""

    path: Path
    compression: Compression
    config_dump: ConfigDump
    spec: dict[str, Any]
    amber_manifest: AmberManifest | None  # None: not written by amber
    bytes_read: int  # compressed bytes consumed from the file

    @property
    def config(self) -> dict[str, Any]:
        """config.dump as the JSON object it was (unknown keys included)."""
        return self.config_dump.to_dict()

    @property
    def manifest(self) -> dict[str, Any] | None:
        """amber.manifest as the JSON object it was, None when absent."""
        return None if self.amber_manifest is None else self.amber_manifest.to_dict()


def _bad(path: Path, what: str, hint: str | None = None) -> ArchiveError:
    return ArchiveError(
        f"checkpoint archive {path} {what}",
        hint=hint
        or "use an archive made by `amber checkpoint --export` or `podman container checkpoint "
        "--export`; if it was copied, copy it again",
    )


def detect_compression(path: Path) -> Compression:
    """The compression of `path`, from its magic bytes (the file name is ignored, as podman does)."""
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"checkpoint archive {path} does not exist", hint="check the path given to --import"
        ) from exc
    except IsADirectoryError as exc:
        raise _bad(path, "is a directory, not a file", hint="give the archive file itself") from exc
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror}", hint="check its permissions") from exc
    if not head:
        raise _bad(path, "is empty")
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return Compression(name)
    if len(head) == 512 and head[257:262] == b"ustar":
        return Compression.NONE
    raise _bad(path, "is not a tar archive (neither plain nor gzip, zstd, bzip2 or xz compressed)")


class _Counter(io.RawIOBase):
    """A raw reader that counts the bytes it hands out."""

    def __init__(self, f: io.FileIO) -> None:
        self.f = f
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b) or 0
        self.count += n
        return n


@contextlib.contextmanager
def _open(path: Path, *, buffered: bool) -> Iterator[tuple[Compression, _Counter, IO[bytes]]]:
    """(compression, raw counter, decompressed stream) of an archive."""
    comp = detect_compression(path)
    with path.open("rb", buffering=0) as f:
        raw = _Counter(f)
        src: Any = io.BufferedReader(raw, safe_tar.CHUNK) if buffered else raw
        stream: Any
        if comp is Compression.ZSTD:
            stream = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True, closefd=False)
        elif comp is Compression.GZIP:
            stream = gzip.GzipFile(fileobj=src, mode="rb")
        elif comp is Compression.BZIP2:
            stream = bz2.BZ2File(src, "rb")
        elif comp is Compression.XZ:
            stream = lzma.LZMAFile(src, "rb")
        else:
            stream = src
        stream = safe_tar.guarded(stream) if buffered else safe_tar.EofGuard(stream)
        yield comp, raw, stream


@contextlib.contextmanager
def _reading(path: Path, tar_started: list[bool]) -> Iterator[None]:
    """Turn what a broken stream raises into an ArchiveError naming the archive."""
    try:
        yield
    except ArchiveError:
        raise
    except (EOFError, tarfile.ReadError) as exc:
        if tar_started[0]:
            raise _bad(path, f"is truncated ({exc})") from exc
        raise _bad(path, f"is not a tar archive, or is truncated ({exc})") from exc
    except safe_tar.READ_ERRORS as exc:
        raise _bad(path, f"is corrupt ({exc})") from exc


def _json_member(path: Path, tar: tarfile.TarFile, ti: tarfile.TarInfo, name: str, limit: int) -> dict[str, Any]:
    if not ti.isreg():
        raise _bad(path, f"has a {name} that is not a regular file")
    if ti.size > limit:
        raise _bad(path, f"has a {name} of {ti.size} bytes, more than the {limit} allowed")
    f = tar.extractfile(ti)
    assert f is not None
    data = f.read(limit + 1)
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"has a corrupt {name}: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise _bad(path, f"has a corrupt {name}: a JSON {type(value).__name__}, not an object")
    return value


def _name(ti: tarfile.TarInfo) -> str:
    name = ti.name
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def read_head(path: Path) -> ArchiveHead:
    """config.dump, spec.dump and amber.manifest (when it comes first), reading no further.

    Raises ArchiveError for a damaged archive or metadata of the wrong shape (naming the field),
    PreconditionError for an amber.manifest of a newer schema than this amber reads."""
    found: dict[str, dict[str, Any]] = {}
    started = [False]
    with _open(path, buffered=False) as (comp, raw, stream), _reading(path, started):
        tar = tarfile.open(fileobj=stream, mode="r|")
        started[0] = True
        for ti in tar:
            name = _name(ti)
            if name in (CONFIG_DUMP, SPEC_DUMP, AMBER_MANIFEST) and name not in found:
                limit = MAX_MANIFEST_SIZE if name == AMBER_MANIFEST else MAX_DUMP_SIZE
                found[name] = _json_member(path, tar, ti, name, limit)
                if CONFIG_DUMP in found and SPEC_DUMP in found:
                    break
        bytes_read = raw.count
    for name in (CONFIG_DUMP, SPEC_DUMP):
        if name not in found:
            raise _bad(path, f"lacks {name}: it is not a container checkpoint")
    config = ConfigDump.from_dict(found[CONFIG_DUMP], path)
    raw_manifest = found.get(AMBER_MANIFEST)
    manifest = None if raw_manifest is None else AmberManifest.from_dict(raw_manifest, path)
    return ArchiveHead(path, comp, config, found[SPEC_DUMP], manifest, bytes_read)


def _extract(
    path: Path,
    dest: Path,
    want: Callable[[str], bool] | None,
    *,
    keep_owner: bool,
    max_total_size: int | None,
    observe: Callable[[MemberInfo], None] | None = None,
) -> list[str]:
    started = [False]
    with _open(path, buffered=True) as (comp, raw, stream), _reading(path, started), contextlib.ExitStack() as stack:
        source: IO[bytes] | tarfile.TarFile = stream
        if comp is Compression.NONE:  # seekable: tarfile reads file data straight, without its stream buffer
            source = stack.enter_context(tarfile.open(fileobj=raw.f, mode="r:"))
        started[0] = True
        seen = None if observe is None else (lambda name, ti: observe(_info(name, ti)))
        return safe_tar.extract(
            source,
            dest,
            archive_name=str(path),
            keep_owner=keep_owner,
            allow_special=False,
            want=want,
            max_total_size=max_total_size,
            observe=seen,
        )


def extract_archive(
    path: Path, dest: Path, *, skip: Callable[[str], bool] | None = None, max_total_size: int | None = None
) -> list[str]:
    """Extract a whole checkpoint into a bundle directory (owners kept). Returns the names written.

    rootfs-diff.tar stays a file here: it is a nested tar, applied later by rootfs_diff.
    """
    want = None if skip is None else (lambda name: not skip(name))
    written = _extract(path, dest, want, keep_owner=True, max_total_size=max_total_size)
    if INVENTORY not in written:
        raise _bad(
            path,
            f"has no {INVENTORY}: not a complete checkpoint",
            hint="the archive is damaged or is a pre-checkpoint; make a new checkpoint",
        )
    return written


def extract_members(
    path: Path, dest: Path, want: Callable[[str], bool], observe: Callable[[MemberInfo], None] | None = None
) -> list[str]:
    """Extract only the members `want` accepts (names like `checkpoint/pstree.img`), in one pass.

    `observe` sees every member's header on the way (what list_members would give, without a
    second pass)."""
    return _extract(path, dest, want, keep_owner=False, max_total_size=None, observe=observe)


_TYPES = {
    tarfile.REGTYPE: MemberType.FILE,
    tarfile.AREGTYPE: MemberType.FILE,
    tarfile.CONTTYPE: MemberType.FILE,
    tarfile.GNUTYPE_SPARSE: MemberType.FILE,
    tarfile.DIRTYPE: MemberType.DIR,
    tarfile.SYMTYPE: MemberType.SYMLINK,
    tarfile.LNKTYPE: MemberType.HARDLINK,
    tarfile.CHRTYPE: MemberType.CHAR,
    tarfile.BLKTYPE: MemberType.BLOCK,
    tarfile.FIFOTYPE: MemberType.FIFO,
}


def _info(name: str, ti: tarfile.TarInfo) -> MemberInfo:
    return MemberInfo(name, ti.size, _TYPES.get(ti.type, MemberType.OTHER), ti.mode, ti.linkname)


def list_members(path: Path) -> list[MemberInfo]:
    """Every member's name, size and type, reading headers only (seeking over data when plain)."""
    started = [False]
    out: list[MemberInfo] = []
    with _open(path, buffered=True) as (comp, raw, stream), _reading(path, started):
        if comp is Compression.NONE:
            tar = tarfile.open(fileobj=raw.f, mode="r:")  # seekable: skips data
        else:
            tar = tarfile.open(fileobj=stream, mode="r|")
        started[0] = True
        with tar:
            while (ti := tar.next()) is not None:
                out.append(MemberInfo(_name(ti), ti.size, _TYPES.get(ti.type, MemberType.OTHER), ti.mode, ti.linkname))
                tar.members.clear()  # type: ignore[attr-defined]  # else tarfile keeps every header
    return out


# ===================================== writing ================================================
@contextlib.contextmanager
def _writeback(fd: int, every: float = 0.2) -> Iterator[None]:
    """Keep the kernel writing the archive to disk while we produce it, so the final fsync is short.

    POSIX_FADV_DONTNEED starts writeback of the file's dirty pages without waiting for it.
    """
    done = threading.Event()

    def kick() -> None:
        while not done.wait(every):
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    thread = threading.Thread(target=kick, name="amber-writeback", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def write_archive(
    dest: Path,
    bundle: Path,
    members: Sequence[str],
    compression: Compression,
    *,
    head: Mapping[str, bytes],
    tmp_dir: Path | None = None,
) -> int:
    """Write a checkpoint archive atomically: `head` entries first (amber.manifest, config.dump,
    spec.dump, then any others; mode 0600), then each of `members` (paths under `bundle`, in order;
    directories walked depth first in byte order; missing ones skipped, sockets too).

    The archive is written to a temporary file beside `dest` (or in `tmp_dir`, which must be on
    the same filesystem), synced, then renamed: it appears whole or not at all. Returns its size.
    """
    if compression not in (Compression.NONE, Compression.GZIP, Compression.ZSTD):
        raise UsageError(f"cannot write {compression} archives", hint="use zstd, gzip or none")
    where = tmp_dir or dest.parent
    fd, tmp = tempfile.mkstemp(dir=where, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with open(fd, "wb", buffering=safe_tar.CHUNK) as raw, _writeback(raw.fileno()):
            out: Any
            if compression is Compression.ZSTD:
                cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
                out = cctx.stream_writer(raw, closefd=False, write_size=safe_tar.CHUNK)
            elif compression is Compression.GZIP:
                out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
            else:
                out = raw
            writer = safe_tar.TarWriter(out, zero_copy=compression is Compression.NONE)
            now = int(time.time())
            first = (AMBER_MANIFEST, CONFIG_DUMP, SPEC_DUMP)
            for name in [n for n in first if n in head] + [n for n in head if n not in first]:
                writer.add_bytes(name, head[name], mode=0o600, mtime=now)
            for member in members:
                path = bundle / member
                if os.path.lexists(path):
                    writer.add_tree(str(path), member.strip("/"))
            writer.close()
            if out is not raw:
                out.close()  # ends the zstd frame / gzip trailer; raw stays open
            raw.flush()
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


__all__ = [  # the member names come from podman_format; readers find them here too
    "AMBER_MANIFEST",
    "CHECKPOINT_DIR",
    "CONFIG_DUMP",
    "CTR_LOG",
    "DELETED_FILES",
    "DEVSHM",
    "INVENTORY",
    "NETWORK_STATUS",
    "ROOTFS_DIFF",
    "SPEC_DUMP",
    "STATS_DUMP",
    "ArchiveHead",
    "Compression",
    "MemberInfo",
    "MemberType",
    "detect_compression",
    "extract_archive",
    "extract_members",
    "list_members",
    "read_head",
    "write_archive",
]
