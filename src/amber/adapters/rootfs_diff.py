"""The container filesystem diff: what a container changed in its root, read from the overlay
upper directory, written as podman's rootfs-diff.tar + deleted.files, and applied on restore.

Podman stats changed paths on the host (a bug); amber reads the upper directory itself:
- a whiteout (character device 0:0) is a deleted path;
- an opaque directory (xattr trusted.overlay.opaque = "y") replaced a lower directory: its path is
  listed as deleted AND the directory is added with its contents. Restore must therefore remove
  the deleted paths *before* extracting the diff tar;
- everything else (files, directories, symlinks, hard links, devices, FIFOs) is added to an
  uncompressed tar with relative names (`etc/foo`), owners, modes and xattrs (not trusted.overlay.*);
  a file with holes as a sparse member (tar.writer): the diff holds its data, restore its holes.

Deleted paths are removed inside the new root without ever leaving it: symlinks met on the way are
resolved *within the root*, as the container would see them (chroot semantics: an absolute target
starts again at the root, `..` stops at the root), like podman's securejoin; the last component
itself is never followed -- a symlink there is removed, not its target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from amber.adapters.state import remove_tree
from amber.adapters.tar.compression import CHUNK, Compression, open_tar_stream, sniff_file
from amber.adapters.tar.extract import extract
from amber.adapters.tar.names import MAX_NAME
from amber.adapters.tar.policy import Policy, Symlinks
from amber.adapters.tar.writer import Discard, TarWriter, stored_size
from amber.errors import AmberError, ArchiveError

MAX_DELETED_FILES_SIZE = 16 << 20
MAX_SYMLINKS = 40  # as the kernel's path walk
OPAQUE_XATTR = "trusted.overlay.opaque"
_UNSUPPORTED_XATTRS = ("trusted.overlay.metacopy", "trusted.overlay.redirect")
ROOTFS_POLICY = Policy(keep_owner=True, allow_special=True, symlinks=Symlinks.ROOTED)


@dataclass(frozen=True)
class RootfsDiff:
    added_or_changed: int  # entries that are new or changed (directories only holding deletions excluded)
    deleted: list[str] = field(default_factory=list)  # container-absolute paths, e.g. "/etc/motd"
    tar_written: bool = False


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


class _Walk:
    def __init__(self, writer: TarWriter, upper: Path) -> None:
        self.writer = writer
        self.upper = upper
        self.changed = 0
        self.deleted: list[str] = []

    def tree(self, path: str, rel: str) -> None:
        """Every entry below directory `path` (relative name `rel`, "" for the upper root), in
        sorted pre-order. Iterative: a tree of any depth, no recursion limit."""
        # A frame: the directory's entries still to visit, its relative name, and what to do when
        # they are done: (its path, opaque, self.changed before it) -- None for `path` itself.
        stack: list[tuple[Iterator[os.DirEntry[str]], str, tuple[str, bool, int] | None]] = [
            (_entries(path), rel, None)
        ]
        while stack:
            entries, parent, done = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                if done is not None:
                    dir_path, opaque, before = done
                    if opaque or self.changed == before and not _has_children(dir_path):
                        self.changed += 1  # replaced, new and empty, or a metadata change of its own
                continue
            child = f"{parent}/{entry.name}" if parent else entry.name
            if self._add(entry, child):
                opaque = _xattr(entry.path, OPAQUE_XATTR) == b"y"
                if opaque:
                    self.deleted.append("/" + child)
                stack.append((_entries(entry.path), child, (entry.path, opaque, self.changed)))

    def _add(self, entry: os.DirEntry[str], child: str) -> bool:
        """Record one entry (a whiteout as deleted, anything else into the tar); is it a directory
        to descend into? Raises AmberError for overlay features whose data is in the layers."""
        st = entry.stat(follow_symlinks=False)
        if _is_whiteout(st):
            self.deleted.append("/" + child)
            return False
        if not stat.S_ISLNK(st.st_mode):
            for name in _UNSUPPORTED_XATTRS:
                if _xattr(entry.path, name) is not None:
                    raise AmberError(
                        f"cannot diff the container filesystem: {self.upper}/{child} uses overlay "
                        f"{name.rsplit('.', 1)[1]}, whose data lives in the image layers",
                        hint="mount overlay without metacopy/redirect_dir, or checkpoint with --ignore-rootfs",
                    )
        self.writer.add(entry.path, child, st)
        if stat.S_ISDIR(st.st_mode):
            return True
        self.changed += 1
        return False


def _entries(path: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return iter(sorted(it, key=lambda e: os.fsencode(e.name)))


def _has_children(path: str) -> bool:
    with os.scandir(path) as it:
        return any(True for _ in it)


@dataclass(frozen=True)
class PlannedDiff:
    """A rootfs diff measured without reading file data: what it holds, and the exact size of
    its tar, so that it can be streamed into an archive (its `write`) with no copy on disk."""

    diff: RootfsDiff
    tar_size: int
    upper: Path

    def write(self, out: TarWriter) -> int:
        """Write the diff's tar into `out.out` (zero-copy as `out`); the bytes written. A tree that
        changed since the plan gives another count (TarWriter.add_stream refuses the member)."""
        walk = _Walk(TarWriter(out.out, zero_copy=out.zero_copy), self.upper)
        walk.tree(str(self.upper), "")
        walk.writer.close()
        return walk.writer.offset


def plan_rootfs_diff(upper: Path) -> PlannedDiff:
    """Walk `upper` once, reading metadata only (a dry TarWriter): a PlannedDiff. The tree must
    not change until it is written (the container is stopped or frozen). Raises as create_rootfs_diff."""
    walk = _Walk(TarWriter(Discard(), dry=True), upper)
    walk.tree(str(upper), "")
    walk.writer.close()
    diff = RootfsDiff(walk.changed, walk.deleted, tar_written=walk.changed > 0)
    return PlannedDiff(diff, walk.writer.offset, upper)


def create_rootfs_diff(upper: Path, tar_path: Path) -> RootfsDiff:
    """Write `tar_path` (only when something was added or changed) and list the deleted paths."""
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    try:
        with open(tmp, "wb", buffering=CHUNK) as f:
            walk = _Walk(TarWriter(f, zero_copy=True), upper)
            walk.tree(str(upper), "")
            walk.writer.close()
        if walk.changed:
            os.replace(tmp, tar_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return RootfsDiff(walk.changed, walk.deleted, tar_written=walk.changed > 0)


def apply_rootfs_diff(tar_path: Path, root: Path, *, max_total_size: int | None = None) -> None:
    """Extract a rootfs-diff.tar onto a container root: owners kept, devices and FIFOs allowed,
    absolute symlinks taken as container paths, nothing written outside `root`, at most
    `max_total_size` bytes (checked against each header before its data).

    The tar may be compressed (containerd's CRI checkpoint gzips it): the compression is sniffed.
    Raises ArchiveError for a malformed or hostile tar, OSError when it cannot be read."""
    if sniff_file(tar_path) is not Compression.NONE:
        with open(tar_path, "rb") as raw:
            apply_rootfs_diff_stream(raw, root, archive=str(tar_path), max_total_size=max_total_size)
        return
    policy = dataclasses.replace(ROOTFS_POLICY, max_total_size=max_total_size)
    with open(tar_path, "rb", buffering=CHUNK) as f:
        extract(f, root, policy, archive=str(tar_path))


def apply_rootfs_diff_stream(raw: IO[bytes], root: Path, *, archive: str, max_total_size: int | None = None) -> None:
    """apply_rootfs_diff of a rootfs diff read from `raw` (compressed or not: sniffed), named
    `archive` in errors: the diff read in place in its checkpoint archive (Span.open), with no
    copy of it made first."""
    policy = dataclasses.replace(ROOTFS_POLICY, max_total_size=max_total_size)
    with open_tar_stream(raw) as stream:
        extract(stream, root, policy, archive=archive)


@dataclass(frozen=True)
class UpperSize:
    """What a rootfs diff of an upper directory would hold: its files' apparent bytes (what a
    restore unpacks, holes included), and the bytes of data the diff stores (holes left out)."""

    apparent: int
    stored: int


def measure_upper(upper: Path) -> UpperSize:
    """Walk `upper` (iteratively, any depth) for UpperSize. Unreadable entries count as empty."""
    total = stored = 0
    stack = [(os.fspath(upper), "")]
    while stack:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, child))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                stored += _stored(entry.path, st)
    return UpperSize(total, stored)


def _stored(path: str, st: os.stat_result) -> int:
    if st.st_blocks * 512 >= st.st_size:
        return st.st_size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return st.st_size
    try:
        return stored_size(fd, st)
    finally:
        os.close(fd)


def parse_deleted_files(data: bytes, archive_name: str) -> list[str]:
    """The paths of a deleted.files member: a JSON list of strings."""
    hint = "the archive is damaged or was not made by podman or amber; restore with --ignore-rootfs"
    if len(data) > MAX_DELETED_FILES_SIZE:
        raise ArchiveError(
            f"checkpoint archive {archive_name}: deleted.files is {len(data)} bytes, more "
            f"than the {MAX_DELETED_FILES_SIZE} allowed",
            hint=hint,
        )
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"checkpoint archive {archive_name}: deleted.files is not JSON ({exc})", hint=hint) from exc
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ArchiveError(f"checkpoint archive {archive_name}: deleted.files is not a list of paths", hint=hint)
    for p in value:
        if not p or "\0" in p or len(p.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise ArchiveError(
                f"checkpoint archive {archive_name}: deleted.files holds an invalid path {p[:100]!r}", hint=hint
            )
    return value


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def _resolve_parent(root_fd: int, parts: list[str]) -> tuple[int, str] | None:
    """(fd of the parent directory, last name) of a path inside the root, following symlinks on
    the way within the root. None when the path cannot exist. The caller closes the fd."""
    stack = [os.dup(root_fd)]
    todo = list(reversed(parts))
    links = 0
    try:
        while len(todo) > 1:
            comp = todo.pop()
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    return None
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
                continue
            if not stat.S_ISDIR(st.st_mode):
                return None
            stack.append(os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1]))
        last = todo.pop() if todo else ""
        if last in ("", ".."):
            return None  # the root itself, or a parent of it: never removed
        fd = stack.pop()
        return fd, last
    finally:
        for fd in stack:
            os.close(fd)


def apply_deleted_files(paths: Sequence[str], root: Path) -> None:
    """Remove each container path under `root` (directories recursively); missing ones are fine."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in paths:
            parts = _components(path)
            if ".." in parts or "\0" in path:
                raise ArchiveError(
                    f"refusing to delete {path!r} in {root}: the path has a '..' component",
                    hint="the archive's deleted.files is hostile or damaged; restore with --ignore-rootfs",
                )
            if not parts:
                raise ArchiveError(
                    f"refusing to delete {path!r}: it is the container's root",
                    hint="the archive's deleted.files is hostile or damaged",
                )
            try:
                found = _resolve_parent(root_fd, parts)
                if found is None:
                    continue
                fd, name = found
                try:
                    _remove(fd, name)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AmberError(
                    f"could not delete {path} in {root}: {exc.strerror or exc}", hint=f"check {root}"
                ) from exc
    finally:
        os.close(root_fd)


def _remove(fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(Path(f"/proc/self/fd/{fd}") / name)  # any depth; symlinks inside are not followed
    else:
        try:
            os.unlink(name, dir_fd=fd)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
