"""Writing tar archives like podman's: PAX, relative names, directories with a trailing `/`, hard
links as link entries, xattrs as `SCHILY.xattr.*` records (not overlayfs's own), sockets skipped.
With `zero_copy` the file data goes from file to file in the kernel (copy_file_range). A `dry`
writer reads no file data: it only counts the bytes a real one would write (a nested tar's size,
known before it is streamed into the outer archive).

A file with holes (SEEK_DATA/SEEK_HOLE) is written as a GNU sparse member, PAX format 1.0 (what
GNU tar writes with --sparse --sparse-version=1.0; Go's archive/tar, and so podman and containerd,
and Python's tarfile read it): only its data is in the archive, so a 3 GiB file of holes costs
its data, not 3 GiB. Readers that do not keep holes write them as zeros.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.adapters.direct_io import DIRECT_FROM, DirectReader, in_page_cache
from amber.adapters.tar.compression import CHUNK
from amber.adapters.tar.metadata import XATTR_PAX_PREFIX
from amber.adapters.tar.policy import OVERLAY_XATTR_PREFIX

if TYPE_CHECKING:
    from amber.adapters.page_pack import Packed

log = logging.getLogger("amber.tar")

USTAR_MAX_SIZE = 0o77777777777  # a sparse member's stored size must fit the ustar field (no PAX size)


def data_ranges(fd: int, size: int) -> list[tuple[int, int]] | None:
    """The (offset, length) extents of a file holding data, by SEEK_DATA/SEEK_HOLE, with a final
    (size, 0) when it ends in a hole (as GNU tar writes); None when it has no hole or its
    filesystem cannot say. Leaves the file position at 0."""
    ranges: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole from here to the end
                    raise
                break
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            ranges.append((start, end - start))
            pos = end
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
    if sum(length for _, length in ranges) >= size:
        return None
    if not ranges or sum(ranges[-1]) < size:
        ranges.append((size, 0))
    return ranges


def sparse_map(ranges: list[tuple[int, int]]) -> bytes:
    """The map in front of a PAX 1.0 sparse member's data, padded to a whole block."""
    text = f"{len(ranges)}\n" + "".join(f"{offset}\n{length}\n" for offset, length in ranges)
    data = text.encode()
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def stored_size(fd: int, st: os.stat_result) -> int:
    """The bytes of a regular file's data a TarWriter puts in an archive (its size when dense)."""
    if st.st_blocks * 512 >= st.st_size:
        return st.st_size
    ranges = data_ranges(fd, st.st_size)
    return st.st_size if ranges is None else sum(length for _, length in ranges)


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


class Discard:
    """A sink for a dry TarWriter's headers."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def flush(self) -> None:
        pass


class SizeChanged(OSError):
    """A member streamed into the archive is not the size its header promised."""


class TarWriter:
    """Writes a PAX tar to a binary stream. With `zero_copy`, `out` must be a plain file object:
    file data then goes from file to file in the kernel (copy_file_range). With `dry`, nothing is
    read nor written (give a Discard): `offset` ends at the size the tar would have. A file in
    `packed` (by path, still of the size packed) has its data put in already compressed by
    `insert(frame)` (page_pack: CRIU's pages, compressed during the dump)."""

    def __init__(
        self,
        out: Any,
        *,
        zero_copy: bool = False,
        dry: bool = False,
        packed: Mapping[str, Packed] | None = None,
        insert: Callable[[Path], None] | None = None,
    ) -> None:
        self.out = out
        self.offset = 0
        self.zero_copy = zero_copy and not dry
        self.dry = dry
        self.packed = packed if insert is not None else None
        self.insert = insert
        self._links: dict[tuple[int, int], str] = {}
        self._buf = bytearray(CHUNK)
        self.skip: set[str] = set()  # paths written already (archive_inplace): add() passes them by

    def _header(self, ti: tarfile.TarInfo) -> None:
        buf = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self.out.write(buf)
        self.offset += len(buf)

    def _pad(self, size: int) -> None:
        rem = size % tarfile.BLOCKSIZE
        if rem:
            self.out.write(b"\0" * (tarfile.BLOCKSIZE - rem))
        self.offset += size + (tarfile.BLOCKSIZE - rem if rem else 0)

    def data_elsewhere(self, size: int) -> None:
        """A member's `size` bytes of data are in the archive already (archive_inplace put them
        there): only the padding after them is written."""
        self._pad(size)

    def add_bytes(self, name: str, data: bytes, *, mode: int = 0o600, mtime: int = 0) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), mode, mtime
        ti.uid, ti.gid = os.getuid(), os.getgid()
        self._header(ti)
        self.out.write(data)
        self._pad(len(data))

    def add_stream(self, name: str, size: int, produce: Callable[[TarWriter], int], *, mode: int, mtime: int) -> None:
        """A regular member of `size` bytes that `produce(self)` writes into `self.out` (returning
        how many it wrote: a nested tar streamed straight into this one, zero_copy as this one).
        Raises SizeChanged when it wrote another number of bytes: the archive is then broken."""
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = size, mode, mtime
        ti.uid, ti.gid = os.getuid(), os.getgid()
        self._header(ti)
        written = produce(self)
        if written != size:
            raise SizeChanged(0, f"{name} took {written} bytes, not the {size} its header promised")
        self._pad(size)

    def info(self, path: str, arcname: str, st: os.stat_result) -> tarfile.TarInfo | None:
        """The header of one entry as `add` writes it (None for a socket, which is skipped); a
        file met again through another hard link becomes a link entry from then on."""
        ti = tarfile.TarInfo(arcname)
        ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        if stat.S_ISSOCK(mode):
            log.info("archive: skipping %s since it is a socket", path)
            return None
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
        return ti

    def add(self, path: str, arcname: str, st: os.stat_result | None = None) -> bool:
        """Add one entry (a directory without its contents). False when skipped (a socket, or a
        path in `skip`: already written)."""
        if path in self.skip:
            return False
        st = st or os.lstat(path)
        ti = self.info(path, arcname, st)
        if ti is None:
            return False
        holes = st.st_blocks * 512 < st.st_size
        if ti.type != tarfile.REGTYPE or (self.dry and not holes):
            self._header(ti)
            if ti.type == tarfile.REGTYPE:
                self._pad(ti.size)
            return True
        ready = None if self.dry or not self.packed else self.packed.get(path)
        if ready is not None and ready.size == ti.size and self.insert is not None:
            self._header(ti)
            self.insert(ready.frame)
            self._pad(ti.size)
            return True
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            ranges = data_ranges(fd, st.st_size) if holes else None
            if ranges is not None:
                self._sparse(fd, ti, ranges, path)
            else:
                self._header(ti)
                self._copy(fd, ti.size, path)
        finally:
            os.close(fd)
        return True

    def _sparse(self, fd: int, ti: tarfile.TarInfo, ranges: list[tuple[int, int]], path: str) -> None:
        """A GNU sparse member, PAX format 1.0: the map, then each extent's data, back to back."""
        head = sparse_map(ranges)
        stored = len(head) + sum(length for _, length in ranges)
        if stored > USTAR_MAX_SIZE:  # a PAX size record would make readers skip wrongly: dense
            self._header(ti)
            self._copy(fd, ti.size, path)
            return
        ti.pax_headers = {
            **ti.pax_headers,
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": ti.name,
            "GNU.sparse.realsize": str(ti.size),
        }
        ti.size = stored
        self._header(ti)
        if not self.dry:  # a dry writer counts the same member without reading its data
            self.out.write(head)
            for offset, length in ranges:
                os.lseek(fd, offset, os.SEEK_SET)
                self._data(fd, length, path)
        self._pad(stored)

    def _copy(self, fd: int, size: int, path: str) -> None:
        if not self.dry:
            self._data(fd, size, path)
        self._pad(size)

    def _data(self, fd: int, size: int, path: str) -> None:
        """Exactly `size` bytes from fd's position (zeros for what a shrunk file no longer has)."""
        left = size
        if left >= DIRECT_FROM:  # not cached: past the page cache, before any kernel copy
            left -= self._data_past_cache(fd, left)
        if self.zero_copy and left:
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

    def _data_past_cache(self, fd: int, size: int) -> int:
        """Up to `size` bytes from fd's position read with O_DIRECT when they are not in the page
        cache (a file restored with O_DIRECT, or one long unread): the bytes read (0: cached)."""
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        if in_page_cache(fd, pos, size):
            return 0
        done = 0
        with DirectReader(fd) as reader:
            for piece in reader.read_range(pos, size):
                self.out.write(piece)
                done += len(piece)
        os.lseek(fd, pos + done, os.SEEK_SET)
        return done

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
