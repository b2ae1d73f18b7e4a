"""Checkpoint archives in podman's format: detect, read the head, list, extract, write.

Podman writes (in order) artifacts/, devshm-checkpoint.tar, config.dump, spec.dump, network.status,
stats-dump, ctr.log, checkpoint/, rootfs-diff.tar, deleted.files, volumes/*.tar. amber writes its
own amber.manifest, then config.dump and spec.dump first, so that `read_head` only reads a few
kilobytes; the rest follows podman's order. Every reader streams: no archive is ever held whole
in memory nor decompressed to disk first.
"""

from __future__ import annotations

import contextlib
import enum
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from amber.adapters.archive_writer import Member as Member
from amber.adapters.archive_writer import Streamed as Streamed
from amber.adapters.archive_writer import write_archive as write_archive
from amber.adapters.archive_writer import write_archive_stream as write_archive_stream
from amber.adapters.direct_io import DIRECT_FROM, SequentialReader, in_page_cache
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
    STATUS_DUMP,
    AmberManifest,
    ConfigDump,
)
from amber.adapters.tar.compression import (
    CHUNK,
    READ_ERRORS,
    Counting,
    EofGuard,
    decompressor,
    guarded,
    sniff,
)
from amber.adapters.tar.compression import Compression as Compression  # re-exported: ArchiveHead, --compress
from amber.adapters.tar.copying import InPlace
from amber.adapters.tar.extract import Divert, extract
from amber.adapters.tar.headers import members, open_tar
from amber.adapters.tar.policy import Policy
from amber.adapters.tar.progress import Progress as Progress  # re-exported: the engine's callbacks
from amber.adapters.tar.progress import reporting as _reporting
from amber.errors import ArchiveError, NotFoundError

MAX_DUMP_SIZE = 16 << 20  # config.dump, spec.dump
MAX_MANIFEST_SIZE = 1 << 20


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
    network_status: dict[str, Any] | None = None  # network.status when it comes with the metadata

    @property
    def config(self) -> dict[str, Any]:
        """config.dump as the JSON object it was (unknown keys included)."""
        return self.config_dump.to_dict()

    @property
    def manifest(self) -> dict[str, Any] | None:
        """amber.manifest as the JSON object it was, None when absent."""
        return None if self.amber_manifest is None else self.amber_manifest.to_dict()


_HINT = (
    "use an archive made by `amber checkpoint --export` or `podman container checkpoint "
    "--export`; if it was copied, copy it again"
)


def _label(path: Path) -> str:
    return f"checkpoint archive {path}"


def _bad(path: Path, what: str, hint: str | None = None) -> ArchiveError:
    return ArchiveError(
        f"checkpoint archive {path} {what}",
        hint=hint or _HINT,
    )


def detect_compression(path: Path) -> Compression:
    """The compression of `path`, from its magic bytes (the file name is ignored, as podman does)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only a regular file is read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode) and not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise _bad(
                    path, "is not a regular file (a FIFO, socket or device)", hint="give the archive file itself"
                )
            os.set_blocking(fd, True)
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
    comp = sniff(head)
    if comp is not Compression.NONE:
        return comp
    if len(head) == 512 and head[257:262] == b"ustar":
        return Compression.NONE
    raise _bad(path, "is not a tar archive (neither plain nor gzip, zstd, bzip2 or xz compressed)")


@contextlib.contextmanager
def _open(path: Path, *, buffered: bool) -> Iterator[tuple[Compression, Counting, IO[bytes]]]:
    """(compression, raw counter over the file, decompressed stream behind an EofGuard) of an archive."""
    comp = detect_compression(path)
    with path.open("rb", buffering=0) as f, contextlib.ExitStack() as stack:
        source: Any = f
        size = os.fstat(f.fileno()).st_size
        # A whole-archive read (`buffered`) of a compressed archive not in the page cache goes
        # past it; read_head's few kilobytes do not.
        if buffered and comp is not Compression.NONE and size >= DIRECT_FROM and not in_page_cache(f.fileno(), 0, size):
            source = stack.enter_context(SequentialReader(f.fileno()))  # past the page cache: direct_io
        raw = Counting(source)
        src: Any = io.BufferedReader(raw, CHUNK) if buffered else raw
        with contextlib.closing(decompressor(src, comp)) as plain:
            stream: Any = guarded(plain) if buffered else EofGuard(plain)
            yield comp, raw, stream


def _file(raw: Counting) -> IO[bytes]:
    """The file under a counter: a plain archive is read seekable, straight from it."""
    f: IO[bytes] = raw.src  # type: ignore[assignment]
    return f


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
    except READ_ERRORS as exc:
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
    """config.dump, spec.dump and amber.manifest (when it comes first), and network.status when
    it follows them (podman's order, amber's), reading no further.

    Raises ArchiveError for a damaged archive or metadata of the wrong shape (naming the field),
    PreconditionError for an amber.manifest of a newer schema than this amber reads."""
    found: dict[str, dict[str, Any]] = {}
    started = [False]
    with _open(path, buffered=False) as (comp, raw, stream), _reading(path, started):
        tar = open_tar(stream, _label(path), stream=True)
        started[0] = True
        for ti in members(tar, _label(path)):
            name = _name(ti)
            if name == NETWORK_STATUS and name not in found:
                # podman writes `null` for a container without a network: read as none at all
                with contextlib.suppress(ArchiveError):
                    found[name] = _json_member(path, tar, ti, name, MAX_MANIFEST_SIZE)
            elif name in (CONFIG_DUMP, SPEC_DUMP, AMBER_MANIFEST) and name not in found:
                limit = MAX_MANIFEST_SIZE if name == AMBER_MANIFEST else MAX_DUMP_SIZE
                found[name] = _json_member(path, tar, ti, name, limit)
            elif CONFIG_DUMP in found and SPEC_DUMP in found and name != STATUS_DUMP:
                break
        bytes_read = raw.count
    for name in (CONFIG_DUMP, SPEC_DUMP):
        if name not in found:
            raise _bad(path, f"lacks {name}: it is not a container checkpoint")
    config = ConfigDump.from_dict(found[CONFIG_DUMP], path)
    raw_manifest = found.get(AMBER_MANIFEST)
    manifest = None if raw_manifest is None else AmberManifest.from_dict(raw_manifest, path)
    return ArchiveHead(path, comp, config, found[SPEC_DUMP], manifest, bytes_read, found.get(NETWORK_STATUS))


def _extract(
    path: Path,
    dest: Path,
    want: Callable[[str], bool] | None,
    *,
    keep_owner: bool,
    max_total_size: int | None,
    observe: Callable[[MemberInfo], None] | None = None,
    progress: Progress | None = None,
    spans: dict[str, Span | None] | None = None,
    divert: Mapping[str, Divert] | None = None,
) -> list[str]:
    started = [False]
    label = _label(path)
    with (
        _open(path, buffered=True) as (comp, raw, stream),
        _reading(path, started),
        contextlib.ExitStack() as stack,
        _reporting(progress, path.stat().st_size, lambda: raw.count),
    ):
        source: IO[bytes] | tarfile.TarFile = stream
        if comp is Compression.NONE:  # seekable: tarfile reads file data straight, without its stream buffer
            source = stack.enter_context(open_tar(_file(raw), label, stream=False))
        started[0] = True
        left = spans if comp is Compression.NONE else None  # members left in the archive, when plain

        def seen(name: str, ti: tarfile.TarInfo) -> None:
            if observe is not None:
                observe(_info(name, ti))
            if left is not None and name in left and ti.isreg() and ti.sparse is None:
                left[name] = Span(path, ti.offset_data, ti.size)

        def wanted(name: str) -> bool:  # seen() has looked at the member first
            return (left is None or left.get(name) is None) and (want is None or want(name))

        policy = Policy(keep_owner=keep_owner, max_total_size=max_total_size)
        return extract(source, dest, policy, archive=label, want=wanted, observe=seen, divert=divert).written


@dataclass(frozen=True)
class Span:
    """Where a plain archive holds one member's data: `size` bytes from `offset` of `path`."""

    path: Path
    offset: int
    size: int

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The member's bytes as a stream read in place (no copy of them is made)."""
        with self.path.open("rb", buffering=0) as f, InPlace(f.fileno(), self.offset, self.size) as window:
            yield cast("IO[bytes]", window)


def extract_archive(
    path: Path,
    dest: Path,
    *,
    skip: Callable[[str], bool] | None = None,
    max_total_size: int | None = None,
    progress: Progress | None = None,
    spans: dict[str, Span | None] | None = None,
    divert: Mapping[str, Divert] | None = None,
) -> list[str]:
    """Extract a whole checkpoint into a bundle directory (owners kept). Returns the names written.
    `progress` is called now and then with (archive bytes read, archive size).

    rootfs-diff.tar stays a file here: it is a nested tar, applied later by rootfs_diff. `spans`:
    in a plain archive, the regular (not sparse) members named there as keys are not written:
    their Span is put there instead, to be read in place. Other members, and every member of a
    compressed archive, are written as usual (their value stays None). `divert[name]` gets a
    regular member's data as a stream (read once, in place) instead of its file being written.
    """
    want = None if skip is None else (lambda name: not skip(name))
    written = _extract(
        path, dest, want, keep_owner=True, max_total_size=max_total_size, progress=progress, spans=spans, divert=divert
    )
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
        plain = comp is Compression.NONE  # seekable: skips data
        tar = open_tar(_file(raw) if plain else stream, _label(path), stream=not plain)
        started[0] = True
        with tar:
            for ti in members(tar, _label(path)):
                out.append(_info(_name(ti), ti))
    return out


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
    "Progress",
    "detect_compression",
    "Span",
    "extract_archive",
    "extract_members",
    "list_members",
    "read_head",
    "Member",
    "Streamed",
    "write_archive",
    "write_archive_stream",
]
