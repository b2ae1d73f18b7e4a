"""Image layers: extract one layer tarball into a directory in overlayfs lower-layer format.

The tarball may be plain, gzip, zstd or xz (sniffed from its magic bytes) and is read once, as a
stream; two sha256 digests are computed on the way: of the bytes as read (the blob digest) and of
the uncompressed tar (the diff_id, which names the layer in the store).

OCI/docker whiteouts become what overlayfs expects in a lower layer: `.wh.NAME` a char device 0:0
named NAME, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.

Layer tarballs are hostile input. Every entry is created by us, relative to directory file
descriptors opened with O_NOFOLLOW|O_DIRECTORY component by component, so a symlink (planted by
the same tarball) is never followed while writing. Refused: absolute names, `..` components, NUL
bytes, names over 4096 bytes, writing below a non-directory, hard links to anything but an earlier
member of the same layer, sockets and other unknown member types, device nodes and FIFOs unless we
are root. Overlay xattrs (`trusted.overlay.*`) carried by the tarball are dropped.

Extraction goes into a fresh temp dir (`.tmp-layer-*`) beside the final place; `commit_layer`
renames it into place. A failed extraction leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import gzip
import hashlib
import io
import logging
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import zstandard

from amber.adapters import safe_tar
from amber.errors import AmberError, ArchiveError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger("amber.layers")

CHUNK = 1 << 20
MAX_NAME_BYTES = 4096
TEMP_PREFIX = ".tmp-"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
XATTR_PREFIXES = ("user.", "security.", "trusted.", "system.posix_acl_")
HOSTILE_HINT = "the tarball is malformed or hostile; get the image again from a source you trust"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM)


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"


MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
)


def sniff(head: bytes) -> Compression:
    """The compression of a stream starting with `head` (at least 6 bytes when available)."""
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def sniff_file(path: Path) -> Compression:
    with path.open("rb") as f:
        return sniff(f.read(8))


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class SourceReadError(Exception):
    """Reading or decompressing the input failed (corrupt, truncated, unreadable)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause


_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, zstandard.ZstdError)


class _HashingRaw(io.RawIOBase):
    """A raw stream over `src` that hashes and counts every byte read through it."""

    def __init__(self, src: Readable) -> None:
        super().__init__()
        self._src = src
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._src.read(len(view))
        except _READ_ERRORS as exc:
            raise SourceReadError(exc) from exc
        n = len(data)
        view[:n] = data
        self.sha.update(data)
        self.count += n
        return n


def _hashing(src: Readable) -> tuple[io.BufferedReader, _HashingRaw]:
    raw = _HashingRaw(src)
    return io.BufferedReader(raw, CHUNK), raw


def _decompressor(stream: io.BufferedReader, kind: Compression) -> Readable:
    if kind is Compression.GZIP:
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if kind is Compression.ZSTD:
        reader: Readable = zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=CHUNK, read_across_frames=True, closefd=False
        )
        return reader
    if kind is Compression.XZ:
        return lzma.LZMAFile(stream, "rb")
    return stream


@contextlib.contextmanager
def open_tar_stream(src: Readable) -> Iterator[io.BufferedReader]:
    """The uncompressed tar bytes of `src` (compression sniffed), as a buffered stream.

    Read errors and corrupt compressed data surface as SourceReadError.
    """
    buffered, _ = _hashing(src)
    kind = sniff(buffered.peek(8)[:8])
    if kind is Compression.NONE:
        yield buffered
        return
    with contextlib.closing(_decompressor(buffered, kind)) as dec:
        plain, _ = _hashing(dec)
        yield plain


@dataclass(frozen=True)
class ExtractedLayer:
    path: Path  # the temp dir holding the layer; commit_layer() moves it into place
    diff_id: str  # sha256 hex of the uncompressed tar
    blob_digest: str  # sha256 hex of the bytes as read (equal to diff_id when uncompressed)
    blob_size: int
    tar_size: int
    size: int  # bytes of regular-file content
    compression: Compression


def extract_layer(src: Readable, work_dir: Path, *, label: str) -> ExtractedLayer:
    """Extract the layer tarball read from `src` into a new temp dir under `work_dir`.

    `label` names the tarball in errors. On any failure the temp dir is removed.
    """
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(dir=work_dir, prefix=f"{TEMP_PREFIX}layer-"))
    try:
        return _extract_into(src, tmp, label)
    except BaseException:
        discard(tmp)
        raise


def _extract_into(src: Readable, tmp: Path, label: str) -> ExtractedLayer:
    blob, blob_raw = _hashing(src)
    kind = sniff(blob.peek(8)[:8])
    try:
        if kind is Compression.NONE:
            plain_raw = blob_raw
            size = _extract_tar(blob, tmp, label)
        else:
            with contextlib.closing(_decompressor(blob, kind)) as dec:
                plain, plain_raw = _hashing(dec)
                size = _extract_tar(plain, tmp, label)
                _drain(plain)
        _drain(blob)
    except SourceReadError as exc:
        raise ArchiveError(
            f"{label} is corrupt or truncated: {exc}",
            hint="get the tarball again; if it came from an image, re-export it",
        ) from exc
    return ExtractedLayer(
        path=tmp,
        diff_id=plain_raw.sha.hexdigest(),
        blob_digest=blob_raw.sha.hexdigest(),
        blob_size=blob_raw.count,
        tar_size=plain_raw.count,
        size=size,
        compression=kind,
    )


def _drain(stream: Readable) -> None:
    while stream.read(CHUNK):
        pass


def _extract_tar(plain: io.BufferedReader, dest: Path, label: str) -> int:
    root_fd = os.open(dest, DIR_FLAGS)
    try:
        ex = _Extractor(root_fd, label)
        try:
            with tarfile.open(fileobj=safe_tar.guarded(plain), mode="r|") as tar:
                for member in tar:
                    ex.add(tar, member)
        except tarfile.TarError as exc:
            raise ArchiveError(f"{label} is not a valid tar archive: {exc}", hint=HOSTILE_HINT) from exc
        ex.finish()
        return ex.size
    finally:
        os.close(root_fd)


def commit_layer(extracted: ExtractedLayer, dest: Path) -> bool:
    """Move the extracted layer to `dest`. False (and the temp dropped) if `dest` already exists."""
    if dest.exists():
        discard(extracted.path)
        return False
    try:
        os.rename(extracted.path, dest)
    except OSError as exc:
        discard(extracted.path)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise AmberError(
            f"could not store layer {dest.name[:12]} in {dest.parent}: {exc.strerror}",
            hint=f"check the filesystem under {dest.parent}",
        ) from exc
    return True


def discard(path: Path) -> None:
    """Remove a layer directory (temp or stored) without following symlinks inside it."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def discard_stale(work_dir: Path, prefix: str = TEMP_PREFIX) -> None:
    """Remove leftover temp dirs of interrupted extractions. Call only while holding the store lock."""
    if not work_dir.is_dir():
        return
    for entry in work_dir.iterdir():
        if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink():
            log.info("removing leftover %s", entry)
            discard(entry)


def shown(name: str, limit: int = 160) -> str:
    """A member name for a message: quoted, and shortened when absurdly long."""
    return repr(name if len(name) <= limit else f"{name[: limit - 40]}...{name[-30:]}")


# -- names ------------------------------------------------------------------------------------


def split_name(name: str, *, what: str = "name") -> tuple[str, ...]:
    """Validated components of a tar member name (`./a//b/` -> ("a", "b")). Raises ValueError."""
    raw = os.fsencode(name)
    if b"\x00" in raw:
        raise ValueError(f"its {what} contains a NUL byte")
    if len(raw) > MAX_NAME_BYTES:
        raise ValueError(f"its {what} is longer than {MAX_NAME_BYTES} bytes")
    if name.startswith("/"):
        raise ValueError(f"its {what} is absolute")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError(f"its {what} has a '..' component")
    return parts


# -- extraction -------------------------------------------------------------------------------


@dataclass
class _Extractor:
    root_fd: int
    label: str
    size: int = 0
    dirs: dict[tuple[str, ...], tarfile.TarInfo] = field(default_factory=dict)
    entries: set[tuple[str, ...]] = field(default_factory=set)
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    def error(self, member: tarfile.TarInfo, problem: str, hint: str = HOSTILE_HINT) -> ArchiveError:
        return ArchiveError(f"{self.label}: member {shown(member.name)}: {problem}", hint=hint)

    def add(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        try:
            parts = split_name(m.name)
        except ValueError as exc:
            raise self.error(m, str(exc)) from None
        try:
            self._add(tar, m, parts)
        except OSError as exc:
            raise self._os_error(m, exc) from exc

    def _os_error(self, m: tarfile.TarInfo, exc: OSError) -> AmberError:
        if exc.errno in SPACE_ERRNOS:
            return AmberError(
                f"could not extract {shown(m.name)} from {self.label}: {exc.strerror}",
                hint="check free space and the filesystem under amber's root",
            )
        return self.error(m, f"cannot be extracted: {exc.strerror or exc}")

    def _add(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        if not parts:
            if not m.isdir():
                raise self.error(m, "names the layer's root but is not a directory")
            self.dirs[()] = m
            return
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(m, parts)
            return
        pfd = self.open_dir(parts[:-1], m, create=True)
        try:
            self._create(tar, m, parts, pfd)
        finally:
            os.close(pfd)

    def _create(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...], pfd: int) -> None:
        base = parts[-1]
        if m.isdir():
            if not self.clear(pfd, parts, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=pfd)
            self.dirs[parts] = m
            return
        if m.isreg():
            self._file(tar, m, pfd, parts)
        elif m.issym():
            self._symlink(m, pfd, parts)
        elif m.islnk():
            self._hardlink(m, pfd, parts)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._special(m, pfd, parts)
        else:
            raise self.error(
                m, f"has member type {m.type!r} (a socket or other special file), which an image layer cannot hold"
            )
        self.entries.add(parts)

    def open_dir(self, parts: tuple[str, ...], m: tarfile.TarInfo, *, create: bool) -> int:
        """An fd of the directory `parts`, every component checked to be a real directory."""
        fd = os.open(".", DIR_FLAGS, dir_fd=self.root_fd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    nfd = os.open(comp, DIR_FLAGS, dir_fd=fd)
                    os.fchmod(nfd, 0o755)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[: i + 1])
                    raise self.error(
                        m, f"would be written below {where!r}, which is a symlink or a file, not a directory"
                    ) from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def clear(self, pfd: int, parts: tuple[str, ...], *, keep_dir: bool) -> bool:
        """Remove what `parts` names, if anything (a later member replaces an earlier one).

        Returns True when an existing directory was kept.
        """
        try:
            st = os.lstat(parts[-1], dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(parts[-1], dir_fd=pfd)
            n = len(parts)
            self.dirs = {k: v for k, v in self.dirs.items() if k[:n] != parts}
            self.entries = {k for k in self.entries if k[:n] != parts}
        else:
            os.unlink(parts[-1], dir_fd=pfd)
            self.entries.discard(parts)
        return False

    def _whiteout(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            dfd = self.open_dir(parts[:-1], m, create=True)
            try:
                os.setxattr(dfd, OPAQUE_XATTR, b"y")
            finally:
                os.close(dfd)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            log.debug("%s: skipping aufs metadata %s", self.label, m.name)
            return
        hidden = base[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise self.error(m, "is a whiteout that names no file")
        if not self.is_root:
            raise self.error(
                m, "is a whiteout, which needs root to be created (a 0:0 device)", hint="run amber as root"
            )
        target = (*parts[:-1], hidden)
        pfd = self.open_dir(parts[:-1], m, create=True)
        try:
            self.clear(pfd, target, keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        finally:
            os.close(pfd)

    def _file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        self.clear(pfd, parts, keep_dir=False)
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        try:
            data = tar.extractfile(m)
            if data is not None:
                with data, open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(data, out, CHUNK)
            self.meta_fd(fd, m)
        finally:
            os.close(fd)
        self.size += m.size

    def _symlink(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        target = os.fsencode(m.linkname)
        if not target or b"\x00" in target or len(target) > MAX_NAME_BYTES:
            raise self.error(m, "is a symlink with an empty, NUL-holding or over-long target")
        self.clear(pfd, parts, keep_dir=False)
        os.symlink(m.linkname, parts[-1], dir_fd=pfd)
        self.meta_name(pfd, parts[-1], m, chmod=False)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        try:
            target = split_name(m.linkname, what="hard link target")
        except ValueError as exc:
            raise self.error(m, str(exc)) from None
        if target not in self.entries or target == parts:
            raise self.error(m, f"is a hard link to {m.linkname!r}, which is not an earlier file of this layer")
        tfd = self.open_dir(target[:-1], m, create=False)
        try:
            if stat.S_ISDIR(os.lstat(target[-1], dir_fd=tfd).st_mode):
                raise self.error(m, f"is a hard link to the directory {m.linkname!r}")
            self.clear(pfd, parts, keep_dir=False)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _special(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        if not self.is_root:
            raise self.error(m, "is a device node or FIFO, which only root may create", hint="run amber as root")
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        dev = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
        self.clear(pfd, parts, keep_dir=False)
        os.mknod(parts[-1], kind | 0o600, dev, dir_fd=pfd)
        self.meta_name(pfd, parts[-1], m, chmod=True)

    # -- metadata: owner, then mode (chown clears setuid bits), then xattrs, then times --------
    def meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        self.xattrs(m, fd)
        os.utime(fd, ns=_times(m))

    def meta_name(self, pfd: int, name: str, m: tarfile.TarInfo, *, chmod: bool) -> None:
        if self.is_root:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        self.xattrs(m, f"/proc/self/fd/{pfd}/{name}")
        os.utime(name, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def xattrs(self, m: tarfile.TarInfo, target: int | str) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith(PAX_XATTR):
                continue
            name = key[len(PAX_XATTR) :]
            if name.startswith("trusted.overlay.") or not name.startswith(XATTR_PREFIXES):
                log.warning("%s: member %s: dropping xattr %s", self.label, m.name, name)
                continue
            try:
                os.setxattr(
                    target, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=isinstance(target, int)
                )
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    raise
                log.warning("%s: member %s: could not set xattr %s: %s", self.label, m.name, name, exc.strerror)

    def finish(self) -> None:
        """Apply directory metadata, deepest first (creating entries changes a directory's mtime)."""
        if () not in self.dirs:
            os.fchmod(self.root_fd, 0o755)
        for parts in sorted(self.dirs, key=len, reverse=True):
            m = self.dirs[parts]
            try:
                fd = self.open_dir(parts, m, create=False)
                try:
                    self.meta_fd(fd, m)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise self._os_error(m, exc) from exc


def _times(m: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(m.mtime) * 1_000_000_000)
    atime_s = m.pax_headers.get("atime")
    try:
        atime = int(float(atime_s) * 1_000_000_000) if atime_s else mtime
    except ValueError:
        atime = mtime
    return atime, mtime
