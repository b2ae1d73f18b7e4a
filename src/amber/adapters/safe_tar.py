"""Tar I/O done carefully: extraction that survives hostile archives, and a fast, faithful writer.

Extraction (`extract`) streams the archive once and creates every entry itself, relative to
directory file descriptors opened with O_NOFOLLOW: a symlink -- planted earlier in the same
archive or already present in the destination -- is never followed, so nothing can be written
outside the destination. Refused outright: absolute names, `..` components, NUL bytes, names over
4096 bytes, duplicate members, links whose target leaves the destination, device nodes and FIFOs
unless the caller allows them, members larger than the caller's bounds or than the free space of
the destination filesystem (minus a reserve). Every refusal is an ArchiveError naming the archive
and the member.

Symlink targets are checked lexically. In the default mode a target must be relative, and its
`..` components may only lead it (`../../lib/x`, never `a/../..`), never climbing above the
destination; with that rule, and links never followed while extracting, every link resolves
inside the destination. With `rooted_symlinks=True` (a container root filesystem) absolute
targets are accepted: they are meant relative to the container's root, as inside a chroot.

Writing (`TarWriter`) emits PAX tars like podman's: relative names, directories with a trailing
`/`, hard links as link entries, xattrs as `SCHILY.xattr.*` records, sockets skipped.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from amber.errors import AmberError, ArchiveError

log = logging.getLogger("amber.tar")

MAX_NAME = 4096
CHUNK = 1 << 20
DEFAULT_RESERVE = 64 << 20  # keep this much free on the destination (at most 5 % of the filesystem)
OVERLAY_XATTR_PREFIX = "trusted.overlay."
XATTR_PAX_PREFIX = "SCHILY.xattr."

# What a broken or truncated compressed tar stream raises while being read.
READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HINT = "the archive is malformed or hostile; do not use it, or recreate it from its source"


# ==================================== extraction ==============================================
@dataclass
class _Extraction:
    archive: str
    root_fd: int
    keep_owner: bool
    allow_special: bool
    rooted_symlinks: bool
    max_member_size: int | None
    max_total_size: int | None
    reserve: int | None
    total: int = 0
    seen: set[str] = field(default_factory=set)
    written: list[str] = field(default_factory=list)
    dirs: list[tuple[str, tarfile.TarInfo]] = field(default_factory=list)
    _cached: tuple[tuple[str, ...], int] | None = None

    def refuse(self, member: str, why: str, hint: str = _HINT) -> ArchiveError:
        shown = member if len(member) <= 200 else member[:200] + "..."
        return ArchiveError(f"archive {self.archive}: refusing member {shown!r}: {why}", hint=hint)

    def forget_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def parent_fd(self, member: str, parts: tuple[str, ...], *, create: bool = True) -> int:
        """An fd of the directory `parts` under the root, made if missing; never through a symlink.

        The returned fd belongs to the cache: do not close it.
        """
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        self.forget_cache()
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                nxt = _open_dir(fd, part, create=create)
                if nxt is None:
                    where = "/".join(parts[: i + 1])
                    raise self.refuse(
                        member, f"{where!r} is a symlink or not a directory; extraction never writes through a symlink"
                    )
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        self._cached = (parts, fd)
        return fd


def _open_dir(parent: int, name: str, *, create: bool) -> int | None:
    """fd of directory `name` in `parent`, not following symlinks; None if it is not a directory."""
    for _ in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None
            raise
    return None


def normalize_name(name: str) -> tuple[str, ...] | str:
    """The components of a member name, or a string telling why the name is refused."""
    raw = os.fsencode(name)
    if b"\0" in raw:
        return "its name contains a NUL byte"
    if len(raw) > MAX_NAME:
        return f"its name is {len(raw)} bytes long (the limit is {MAX_NAME})"
    if name.startswith("/"):
        return "its name is an absolute path"
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        return "its name has a '..' component"
    longest = max((len(os.fsencode(p)) for p in parts), default=0)
    if longest > 255:
        return f"a component of its name is {longest} bytes long (the limit is 255)"
    return parts


def _symlink_escape(parts: tuple[str, ...], target: str, rooted: bool) -> str | None:
    """Why a symlink at `parts` pointing to `target` leaves the destination, or None."""
    if not target or "\0" in target:
        return "its target is empty or contains a NUL byte"
    if target.startswith("/"):
        return None if rooted else f"its target {target!r} is an absolute path"
    depth = len(parts) - 1
    climbing = True
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not climbing and not rooted:
                return f"its target {target!r} has a '..' after a name"
            depth -= 1
            if depth < 0:
                return f"its target {target!r} points outside the destination"
        else:
            climbing = False
            depth += 1
    return None


def _remove_existing(ex: _Extraction, fd: int, name: str, *, keep_dir: bool) -> bool:
    """Clear the way for a new entry; True when a directory is there and was kept."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        shutil.rmtree(name, dir_fd=fd)  # `fd` (the cached parent) stays valid
    else:
        os.unlink(name, dir_fd=fd)
    return False


def _set_xattrs(target: int | str, ti: tarfile.TarInfo, member: str) -> None:
    for key, value in ti.pax_headers.items():
        if not key.startswith(XATTR_PAX_PREFIX):
            continue
        attr = key[len(XATTR_PAX_PREFIX) :]
        if attr.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            log.warning("could not set xattr %s on %s: %s", attr, member, exc.strerror)


def _apply_meta(ex: _Extraction, target: int | str, ti: tarfile.TarInfo, member: str) -> None:
    """Owner, mode, xattrs and mtime of an fd (or /proc/self/fd path) that is the member."""
    mode = ti.mode & 0o7777
    if ex.keep_owner:
        os.chown(target, ti.uid, ti.gid)
    else:
        mode &= 0o1777  # no set-id bits on files we do not give their owner back
    os.chmod(target, mode)
    _set_xattrs(target, ti, member)
    os.utime(target, ns=(int(ti.mtime * 1e9),) * 2)


def _check_size(ex: _Extraction, member: str, size: int) -> None:
    if ex.max_member_size is not None and size > ex.max_member_size:
        raise ex.refuse(member, f"it is {size} bytes, more than the {ex.max_member_size} allowed")
    ex.total += size
    if ex.max_total_size is not None and ex.total > ex.max_total_size:
        raise ex.refuse(member, f"the archive expands to more than the {ex.max_total_size} bytes allowed")
    if size:
        vfs = os.fstatvfs(ex.root_fd)
        reserve = ex.reserve if ex.reserve is not None else min(DEFAULT_RESERVE, vfs.f_blocks * vfs.f_frsize // 20)
        free = vfs.f_bavail * vfs.f_frsize - reserve
        if size > free:
            raise ex.refuse(
                member,
                f"it is {size} bytes and the destination has {max(free, 0)} bytes to spare",
                hint="free some space on the destination filesystem",
            )


def _copy_in_kernel(ex: _Extraction, tar: tarfile.TarFile, ti: tarfile.TarInfo, out: int, member: str) -> bool:
    """From a plain, seekable tar: copy the member's data file to file in the kernel.

    copy_file_range within a filesystem, sendfile across them (disk to tmpfs).
    """
    if ti.sparse is not None:
        return False
    try:
        src = int(getattr(tar.fileobj, "fileno")())  # noqa: B009 - a stream-mode tar has no fileno
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    offset, left = ti.offset_data, ti.size
    use_range = hasattr(os, "copy_file_range")
    while left:
        try:
            if use_range:
                n = os.copy_file_range(src, out, min(left, 1 << 30), offset)
            else:
                n = os.sendfile(out, src, offset, min(left, 1 << 30))
        except OSError:
            if use_range and left == ti.size:
                use_range = False  # e.g. EXDEV: another filesystem
                continue
            if left == ti.size:
                return False  # copy through user space
            raise
        if n == 0:
            raise ArchiveError(
                f"archive {ex.archive} is truncated in member {member!r}",
                hint="copy the archive again; it is incomplete",
            )
        offset += n
        left -= n
    return True


def _copy_from_stream(ex: _Extraction, tar: tarfile.TarFile, ti: tarfile.TarInfo, out: Any, member: str) -> bool:
    """From a stream-mode tar: read the member's data straight from the stream under tarfile.

    tarfile's stream reader copies every chunk two or three times (1 s per GiB here); reading the
    underlying stream directly avoids that. It relies on tarfile's _Stream keeping its read-ahead
    in `buf` and its position in `pos` (CPython 3.8 to 3.14), and is used only when the stream
    stands exactly at the member's data; otherwise the caller falls back to tarfile's reader.
    """
    stream: Any = tar.fileobj
    if (
        type(stream).__name__ != "_Stream"
        or getattr(stream, "comptype", None) != "tar"
        or getattr(stream, "pos", None) != ti.offset_data
        or not isinstance(getattr(stream, "buf", None), bytes)
        or ti.sparse is not None
    ):
        return False
    head: bytes = stream.buf
    take = min(len(head), ti.size)
    out.write(head[:take])
    stream.buf = head[take:]
    left = ti.size - take
    source = stream.fileobj
    buf = bytearray(min(CHUNK, left) or 1)
    view = memoryview(buf)
    while left:
        try:
            n = source.readinto(view[: min(len(buf), left)])
        except READ_ERRORS as exc:
            raise ArchiveError(
                f"archive {ex.archive} is truncated or corrupt in member {member!r}: {exc}",
                hint="copy the archive again; it is incomplete",
            ) from exc
        if not n:
            raise ArchiveError(
                f"archive {ex.archive} is truncated in member {member!r}",
                hint="copy the archive again; it is incomplete",
            )
        written = 0
        while written < n:
            written += out.write(view[written:n]) or 0
        left -= n
    stream.pos += ti.size
    return True


def _write_file(ex: _Extraction, tar: tarfile.TarFile, ti: tarfile.TarInfo, fd: int, name: str, member: str) -> None:
    _check_size(ex, member, ti.size)
    _remove_existing(ex, fd, name, keep_dir=False)
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
    with os.fdopen(out, "wb", buffering=0) as f:
        if _copy_in_kernel(ex, tar, ti, f.fileno(), member) or _copy_from_stream(ex, tar, ti, f, member):
            _apply_meta(ex, f.fileno(), ti, member)
            return
        src = tar.extractfile(ti)
        assert src is not None
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            try:
                n = src.readinto(view)  # type: ignore[attr-defined]
            except READ_ERRORS as exc:
                raise ArchiveError(
                    f"archive {ex.archive} is truncated or corrupt in member {member!r}: {exc}",
                    hint="copy the archive again; it is incomplete",
                ) from exc
            if not n:
                break
            written = 0
            while written < n:
                written += f.write(view[written:n]) or 0
        _apply_meta(ex, f.fileno(), ti, member)


def _extract_one(
    ex: _Extraction, tar: tarfile.TarFile, ti: tarfile.TarInfo, parts: tuple[str, ...], member: str
) -> None:
    fd = ex.parent_fd(member, parts[:-1])
    name = parts[-1]
    if ti.isdir():
        if not _remove_existing(ex, fd, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=fd)
        ex.dirs.append((member, ti))
    elif ti.isreg():
        _write_file(ex, tar, ti, fd, name, member)
    elif ti.issym():
        why = _symlink_escape(parts, ti.linkname, ex.rooted_symlinks)
        if why:
            raise ex.refuse(member, f"it is a symlink and {why}")
        _remove_existing(ex, fd, name, keep_dir=False)
        os.symlink(ti.linkname, name, dir_fd=fd)
        if ex.keep_owner:
            os.chown(name, ti.uid, ti.gid, dir_fd=fd, follow_symlinks=False)
        os.utime(name, ns=(int(ti.mtime * 1e9),) * 2, dir_fd=fd, follow_symlinks=False)
    elif ti.islnk():
        _link(ex, ti, parts, fd, name, member)
    elif ti.ischr() or ti.isblk() or ti.isfifo():
        if not ex.allow_special:
            raise ex.refuse(member, "device nodes and FIFOs are not allowed in this archive")
        _remove_existing(ex, fd, name, keep_dir=False)
        if ti.isfifo():
            os.mkfifo(name, 0o600, dir_fd=fd)
        else:
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(ti.devmajor, ti.devminor), dir_fd=fd)
        node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            _apply_meta(ex, f"/proc/self/fd/{node}", ti, member)
        finally:
            os.close(node)
    else:
        raise ex.refuse(member, f"its type {ti.type!r} is not supported")


def _link(ex: _Extraction, ti: tarfile.TarInfo, parts: tuple[str, ...], fd: int, name: str, member: str) -> None:
    target = normalize_name(ti.linkname)
    if isinstance(target, str) or not target:
        raise ex.refuse(member, f"it is a hard link to {ti.linkname!r}, outside the destination")
    if target == parts:
        raise ex.refuse(member, "it is a hard link to itself")
    try:
        tfd = os.dup(ex.parent_fd(member, target[:-1], create=False))
    except FileNotFoundError as exc:
        raise ex.refuse(member, f"its hard link target {ti.linkname!r} was not extracted before it") from exc
    try:
        fd = ex.parent_fd(member, parts[:-1])
        _remove_existing(ex, fd, name, keep_dir=False)
        try:
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise ex.refuse(member, f"its hard link target {ti.linkname!r} was not extracted before it") from exc
        except PermissionError as exc:  # link(2) on a directory
            raise ex.refuse(member, f"its hard link target {ti.linkname!r} is a directory") from exc
    finally:
        os.close(tfd)


def _finish_dirs(ex: _Extraction) -> None:
    """Directory metadata last (deepest first): creating entries would change mtimes and a
    read-only directory would block its own contents."""
    ex.forget_cache()
    for member, ti in reversed(ex.dirs):
        parts = normalize_name(member)
        assert isinstance(parts, tuple)
        fd = ex.parent_fd(member, parts)
        _apply_meta(ex, fd, ti, member)


class EofGuard(io.RawIOBase):
    """Stops tarfile at the real end of a stream.

    In stream mode tarfile skips a member by reading as many bytes as its header claims, and
    keeps calling read() after the data has ended: a header claiming 1 PiB would spin for ever.
    After a few empty reads in a row this raises EOFError (the stream is truncated).
    """

    def __init__(self, inner: IO[bytes], limit: int = 16) -> None:
        self.inner = inner
        self.limit = limit
        self.empty = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if hasattr(self.inner, "readinto"):
            n = self.inner.readinto(b) or 0
        else:
            data = self.inner.read(len(b))
            n = len(data)
            b[:n] = data
        if not n:
            self.empty += 1
            if self.empty > self.limit:
                raise EOFError("the data ends before the archive's headers say it does")
            return 0
        self.empty = 0
        return n


def guarded(stream: IO[bytes]) -> IO[bytes]:
    """`stream`, buffered, behind an EofGuard: what every streaming tar reader should read."""
    return io.BufferedReader(EofGuard(stream), CHUNK)


def _next(tar: tarfile.TarFile, archive: str) -> tarfile.TarInfo | None:
    try:
        tar.members.clear()  # type: ignore[attr-defined]  # else tarfile keeps every header it read
        return tar.next()
    except READ_ERRORS as exc:
        raise ArchiveError(
            f"archive {archive} is truncated or corrupt: {exc}",
            hint="copy the archive again; it is incomplete or damaged",
        ) from exc


@contextlib.contextmanager
def open_stream(source: IO[bytes] | tarfile.TarFile, archive: str) -> Iterator[tarfile.TarFile]:
    """A streaming TarFile over an uncompressed tar stream (or the TarFile given).

    tarfile's stream mode copies its whole read buffer on every read, so its buffer stays at the
    default 10 KiB: give it a buffered stream (io.BufferedReader) for large reads underneath.
    """
    if isinstance(source, tarfile.TarFile):
        yield source
        return
    try:
        tar = tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK)
    except READ_ERRORS as exc:
        raise ArchiveError(
            f"archive {archive} is not a tar archive ({exc})",
            hint="give a tar archive, optionally gzip or zstd compressed",
        ) from exc
    with tar:
        yield tar


def extract(
    source: IO[bytes] | tarfile.TarFile,
    dest: Path,
    *,
    archive_name: str,
    keep_owner: bool,
    allow_special: bool,
    want: Callable[[str], bool] | None = None,
    max_member_size: int | None = None,
    max_total_size: int | None = None,
    reserve: int | None = None,
    rooted_symlinks: bool = False,
    observe: Callable[[str, tarfile.TarInfo], None] | None = None,
) -> list[str]:
    """Extract a tar stream into `dest` (made if missing). Returns the member names written.

    `want(name)` sees names normalized (`./a//b/` -> `a/b`); unwanted members are skipped but
    still checked for duplicates. Missing parent directories are created 0755.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extraction(
        archive_name, root_fd, keep_owner, allow_special, rooted_symlinks, max_member_size, max_total_size, reserve
    )
    try:
        with open_stream(source, archive_name) as tar:
            while (ti := _next(tar, archive_name)) is not None:
                parts = normalize_name(ti.name)
                if isinstance(parts, str):
                    raise ex.refuse(ti.name, parts)
                if not parts:
                    continue  # the archive's own root, "./"
                member = "/".join(parts)
                if member in ex.seen:
                    raise ex.refuse(member, "it appears twice in the archive")
                ex.seen.add(member)
                if observe is not None:
                    observe(member, ti)
                if want is not None and not want(member):
                    continue
                try:
                    _extract_one(ex, tar, ti, parts, member)
                except OSError as exc:
                    raise AmberError(
                        f"could not extract {member!r} from {archive_name} into {dest}: {exc.strerror or exc}",
                        hint=f"check the free space and permissions of {dest}",
                    ) from exc
                ex.written.append(member)
            _finish_dirs(ex)
    finally:
        ex.forget_cache()
        os.close(root_fd)
    return ex.written


# ===================================== writing ================================================
def read_xattrs(path: str | int) -> dict[str, bytes]:
    """The xattrs of a path (not following symlinks) or fd, minus overlayfs's private ones."""
    try:
        names = os.listxattr(path, follow_symlinks=False) if isinstance(path, str) else os.listxattr(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        with contextlib.suppress(FileNotFoundError, OSError):
            out[name] = (
                os.getxattr(path, name, follow_symlinks=False) if isinstance(path, str) else os.getxattr(path, name)
            )
    return out


class TarWriter:
    """Writes a PAX tar to a binary stream. With `zero_copy`, `out` must be a plain file object:
    file data then goes from file to file in the kernel (copy_file_range)."""

    def __init__(self, out: Any, *, zero_copy: bool = False) -> None:
        self.out = out
        self.offset = 0
        self.zero_copy = zero_copy
        self._links: dict[tuple[int, int], str] = {}
        self._buf = bytearray(CHUNK)

    def _header(self, ti: tarfile.TarInfo) -> None:
        buf = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self.out.write(buf)
        self.offset += len(buf)

    def _pad(self, size: int) -> None:
        rem = size % tarfile.BLOCKSIZE
        if rem:
            self.out.write(b"\0" * (tarfile.BLOCKSIZE - rem))
        self.offset += size + (tarfile.BLOCKSIZE - rem if rem else 0)

    def add_bytes(self, name: str, data: bytes, *, mode: int = 0o600, mtime: int = 0) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), mode, mtime
        ti.uid, ti.gid = os.getuid(), os.getgid()
        self._header(ti)
        self.out.write(data)
        self._pad(len(data))

    def add(self, path: str, arcname: str, st: os.stat_result | None = None) -> bool:
        """Add one entry (a directory without its contents). False when skipped (a socket)."""
        st = st or os.lstat(path)
        ti = tarfile.TarInfo(arcname)
        ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        if stat.S_ISSOCK(mode):
            log.info("archive: skipping %s since it is a socket", path)
            return False
        if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in self._links:
            ti.type, ti.linkname = tarfile.LNKTYPE, self._links[key]
        elif stat.S_ISREG(mode):
            ti.type, ti.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            self._links.setdefault(key, arcname)
        ti.pax_headers = {
            XATTR_PAX_PREFIX + k: v.decode("utf-8", "surrogateescape") for k, v in read_xattrs(path).items()
        }
        if ti.type != tarfile.REGTYPE:
            self._header(ti)
            return True
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self._header(ti)
            self._copy(fd, ti.size, path)
        finally:
            os.close(fd)
        return True

    def _copy(self, fd: int, size: int, path: str) -> None:
        left = size
        if self.zero_copy:
            self.out.flush()
            dst = self.out.fileno()
            while left:
                try:
                    n = os.copy_file_range(fd, dst, min(left, 1 << 30))
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    self.zero_copy = False
                    break
                if n == 0:
                    break
                left -= n
        view = memoryview(self._buf)
        while left:
            n = os.readv(fd, [view[: min(left, CHUNK)]])
            if n == 0:
                break
            self.out.write(view[:n])
            left -= n
        if left:  # the file shrank while we read it: keep the header's promise
            log.warning("%s shrank while being archived; padding %d bytes", path, left)
            while left:
                n = min(left, CHUNK)
                self.out.write(bytes(n))
                left -= n
        self._pad(size)

    def add_tree(self, path: str, arcname: str) -> None:
        """`path` and, for a directory, everything under it: depth first, names in byte order."""
        st = os.lstat(path)
        self.add(path, arcname, st)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
            for entry in entries:
                self.add_tree(entry.path, f"{arcname}/{entry.name}")

    def close(self) -> None:
        """The end-of-archive marker: two zero blocks."""
        self.out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        self.offset += 2 * tarfile.BLOCKSIZE
