"""The one extractor of hostile tar archives: checkpoints, rootfs diffs, /dev/shm, image layers.

It streams the archive once and creates every entry itself, relative to directory file
descriptors opened with O_NOFOLLOW component by component: a symlink -- planted earlier in the
same archive or already present in the destination -- is never followed, so nothing is written
outside the destination. Always refused, as an ArchiveError naming the archive and the member:
malformed headers (headers.py), absolute names, `..` components, NUL bytes, over-long names
(names.py), writing below a non-directory, hard links to anything but an earlier non-directory
member, sockets and unknown member types. What else is allowed is the caller's `Policy`: owners,
device nodes and FIFOs, symlink targets, xattrs, OCI whiteouts, sizes and duplicates.

Directory metadata is applied last, deepest first: creating entries changes a directory's mtime,
and a read-only directory would block its own contents.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from amber.adapters.tar.copying import copy_member, member_reader
from amber.adapters.tar.headers import members, open_tar, sparse_of
from amber.adapters.tar.metadata import apply_meta, set_xattrs, times_ns
from amber.adapters.tar.names import bad_target, normalize_name, problem, shown, symlink_escape
from amber.adapters.tar.policy import DEFAULT_RESERVE, Duplicates, Policy, Symlinks
from amber.errors import AmberError, ArchiveError

WHITEOUT_PREFIX = ".wh."
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# A regular member handed to its caller instead of written: called with a stream of its data
# (tar.copying.member_reader), read in place; what it leaves unread is skipped.
Divert = Callable[[IO[bytes]], None]


@dataclass(frozen=True)
class Extracted:
    written: list[str]  # normalized names of the members extracted, in archive order
    size: int  # bytes of regular-file content


@dataclass
class Extraction:
    """The state of one extraction; whiteout hooks use dir_fd, clear and refuse."""

    archive: str
    policy: Policy
    root_fd: int
    dest: Path
    total: int = 0
    size: int = 0
    seen: set[str] = field(default_factory=set)
    written: list[str] = field(default_factory=list)
    dirs: dict[tuple[str, ...], tarfile.TarInfo] = field(default_factory=dict)
    divert: Mapping[str, Divert] = field(default_factory=dict)
    entries: set[tuple[str, ...]] = field(default_factory=set)
    _cached: tuple[tuple[str, ...], int] | None = None

    def refuse(self, member: str, why: str, hint: str | None = None) -> ArchiveError:
        return ArchiveError(f"{self.archive}: refusing member {shown(member)}: {why}", hint=hint or self.policy.hint)

    def forget_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def dir_fd(self, member: str, parts: tuple[str, ...], *, create: bool = True) -> int:
        """An fd of the directory `parts`, made 0755 if missing; never through a symlink.

        The fd belongs to a one-entry cache: do not close it. Raises ArchiveError when a
        component is a symlink or not a directory, FileNotFoundError when missing and not `create`.
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

    def clear(self, fd: int, parts: tuple[str, ...], *, keep_dir: bool) -> bool:
        """Remove what `parts` (in directory `fd`) names, if anything; True when a directory is
        there and was kept."""
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(parts[-1], dir_fd=fd)
            n = len(parts)
            self.dirs = {k: v for k, v in self.dirs.items() if k[:n] != parts}
            self.entries = {k for k in self.entries if k[:n] != parts}
        else:
            os.unlink(parts[-1], dir_fd=fd)
            self.entries.discard(parts)
        return False

    def add(
        self,
        tar: tarfile.TarFile,
        ti: tarfile.TarInfo,
        want: Callable[[str], bool] | None,
        observe: Callable[[str, tarfile.TarInfo], None] | None,
    ) -> None:
        parts = normalize_name(ti.name)
        if isinstance(parts, str):
            raise self.refuse(ti.name, parts)
        member = "/".join(parts)
        if not parts:
            if not ti.isdir():
                raise self.refuse(ti.name, "it names the archive's root but is not a directory")
            if self.policy.root_entry:
                self.dirs[()] = ti
            return
        if self.policy.duplicates is Duplicates.REFUSE:
            if member in self.seen:
                raise self.refuse(member, "it appears twice in the archive")
            self.seen.add(member)
        if observe is not None:
            observe(member, ti)
        if want is not None and not want(member):
            return
        handler = self.divert.get(member) if ti.isreg() and sparse_of(ti) is None else None
        try:
            if handler is not None:
                self._check_size(member, ti.size, ti.size)
                with member_reader(tar, ti, self.archive, member) as data:
                    handler(data)
                self.size += ti.size
                self.written.append(member)
                return
            if self.policy.whiteout is not None and parts[-1].startswith(WHITEOUT_PREFIX):
                self.policy.whiteout(self, ti, parts)
                return
            self._create(tar, ti, parts, member)
        except OSError as exc:
            raise self.os_error(member, exc) from exc
        self.written.append(member)

    def os_error(self, member: str, exc: OSError) -> AmberError:
        if exc.errno in SPACE_ERRNOS:
            return AmberError(
                f"could not extract {shown(member)} from {self.archive} into {self.dest}: {exc.strerror or exc}",
                hint=f"check the free space and permissions of {self.dest}",
            )
        return self.refuse(member, f"it cannot be extracted: {exc.strerror or exc}")

    def _create(self, tar: tarfile.TarFile, ti: tarfile.TarInfo, parts: tuple[str, ...], member: str) -> None:
        fd = self.dir_fd(member, parts[:-1])
        name = parts[-1]
        if ti.isdir():
            if not self.clear(fd, parts, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=fd)
            self.dirs[parts] = ti
            return
        if ti.isreg():
            self._check_size(member, ti.size, _stored(ti))
            self.clear(fd, parts, keep_dir=False)
            with open(os.open(name, _NEW_FILE, 0o600, dir_fd=fd), "wb", buffering=0) as out:
                copy_member(tar, ti, out, self.archive, member)
                apply_meta(self.policy, out.fileno(), ti, self.archive, member)
            self.size += ti.size
        elif ti.issym():
            self._symlink(ti, parts, fd, member)
        elif ti.islnk():
            self._link(ti, parts, member)
        elif ti.ischr() or ti.isblk() or ti.isfifo():
            self._special(ti, parts, fd, member)
        else:
            raise self.refuse(member, f"its type {ti.type!r} (a socket or other special file) is not supported")
        self.entries.add(parts)

    def _symlink(self, ti: tarfile.TarInfo, parts: tuple[str, ...], fd: int, member: str) -> None:
        rule = self.policy.symlinks
        if rule is Symlinks.ANY:
            why = bad_target(ti.linkname)
        else:
            why = symlink_escape(parts, ti.linkname, rooted=rule is Symlinks.ROOTED)
        if why is not None:
            raise self.refuse(member, f"it is a symlink and {why}")
        self.clear(fd, parts, keep_dir=False)
        os.symlink(ti.linkname, parts[-1], dir_fd=fd)
        if self.policy.keep_owner:
            os.chown(parts[-1], ti.uid, ti.gid, dir_fd=fd, follow_symlinks=False)
        set_xattrs(self.policy, f"/proc/self/fd/{fd}/{parts[-1]}", ti, self.archive, member, follow=False)
        os.utime(parts[-1], ns=times_ns(ti), dir_fd=fd, follow_symlinks=False)

    def _link(self, ti: tarfile.TarInfo, parts: tuple[str, ...], member: str) -> None:
        target = problem(ti.linkname, what="hard link target")
        if isinstance(target, str) or not target:
            raise self.refuse(member, f"it is a hard link to {shown(ti.linkname)}, outside the destination")
        if target == parts or target not in self.entries:
            raise self.refuse(
                member, f"it is a hard link to {shown(ti.linkname)}, which is not an earlier file of this archive"
            )
        tfd = os.dup(self.dir_fd(member, target[:-1], create=False))
        try:
            if stat.S_ISDIR(os.stat(target[-1], dir_fd=tfd, follow_symlinks=False).st_mode):
                raise self.refuse(member, f"it is a hard link to the directory {shown(ti.linkname)}")
            fd = self.dir_fd(member, parts[:-1])
            self.clear(fd, parts, keep_dir=False)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _special(self, ti: tarfile.TarInfo, parts: tuple[str, ...], fd: int, member: str) -> None:
        if not self.policy.allow_special:
            raise self.refuse(member, self.policy.special_refusal, self.policy.special_hint)
        self.clear(fd, parts, keep_dir=False)
        if ti.isfifo():
            os.mkfifo(parts[-1], 0o600, dir_fd=fd)
        else:
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(parts[-1], kind | 0o600, os.makedev(ti.devmajor, ti.devminor), dir_fd=fd)
        node = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            apply_meta(self.policy, f"/proc/self/fd/{node}", ti, self.archive, member)
        finally:
            os.close(node)

    def _check_size(self, member: str, size: int, stored: int) -> None:
        """Limits count a file's apparent size (a sparse file's holes too), the free space what
        it takes (a sparse file's data)."""
        p = self.policy
        if p.max_member_size is not None and size > p.max_member_size:
            raise self.refuse(member, f"it is {size} bytes, more than the {p.max_member_size} allowed")
        self.total += size
        if p.max_total_size is not None and self.total > p.max_total_size:
            raise self.refuse(member, f"the archive expands to more than the {p.max_total_size} bytes allowed")
        if stored:
            vfs = os.fstatvfs(self.root_fd)
            reserve = p.reserve if p.reserve is not None else min(DEFAULT_RESERVE, vfs.f_blocks * vfs.f_frsize // 20)
            free = vfs.f_bavail * vfs.f_frsize - reserve
            if stored > free:
                raise self.refuse(
                    member,
                    f"it is {stored} bytes and the destination has {max(free, 0)} bytes to spare",
                    hint="free some space on the destination filesystem",
                )

    def finish(self) -> None:
        """Directory metadata, deepest first."""
        self.forget_cache()
        if self.policy.root_entry and () not in self.dirs:
            os.fchmod(self.root_fd, 0o755)
        for parts in sorted(self.dirs, key=len, reverse=True):
            member = "/".join(parts) or "."
            try:
                apply_meta(
                    self.policy, self.dir_fd(member, parts, create=False), self.dirs[parts], self.archive, member
                )
            except OSError as exc:
                raise self.os_error(member, exc) from exc


def _stored(ti: tarfile.TarInfo) -> int:
    """The bytes a regular member's data takes once extracted: a sparse member's extents."""
    sparse = sparse_of(ti)
    return ti.size if sparse is None else sum(length for _, length in sparse)


def _open_dir(parent: int, name: str, *, create: bool) -> int | None:
    """fd of directory `name` in `parent`, not following symlinks; None if it is not a directory."""
    for _ in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent)
                made = os.open(name, _DIR_FLAGS, dir_fd=parent)
                os.fchmod(made, 0o755)
                return made
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None
            raise
    return None


@contextlib.contextmanager
def _opened(source: IO[bytes] | tarfile.TarFile, archive: str) -> Iterator[tarfile.TarFile]:
    if isinstance(source, tarfile.TarFile):
        yield source
        return
    with open_tar(source, archive, stream=True) as tar:
        yield tar


def extract(
    source: IO[bytes] | tarfile.TarFile,
    dest: Path,
    policy: Policy,
    *,
    archive: str,
    want: Callable[[str], bool] | None = None,
    observe: Callable[[str, tarfile.TarInfo], None] | None = None,
    divert: Mapping[str, Divert] | None = None,
) -> Extracted:
    """Extract a tar stream (or a TarFile from headers.open_tar) into `dest`, made if missing.

    tarfile's stream reader copies its whole read-ahead on every read, so it keeps its small
    default buffer: file data bypasses it (copying.py) and only headers go through it.

    `archive` names it in errors. `want(name)` sees names normalized (`./a//b/` -> `a/b`);
    unwanted members are skipped but still checked; `observe(name, ti)` sees every header;
    `divert[name]` gets a wanted regular member's data instead of a file being written (its size
    still counts against the policy's limit).
    Raises ArchiveError for a hostile or broken archive, AmberError when the destination fails
    (no space, read-only).
    """
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = Extraction(archive, policy, root_fd, dest, divert=divert or {})
    try:
        with _opened(source, archive) as tar:
            for ti in members(tar, archive):
                ex.add(tar, ti, want, observe)
            ex.finish()
    finally:
        ex.forget_cache()
        os.close(root_fd)
    return Extracted(ex.written, ex.size)
