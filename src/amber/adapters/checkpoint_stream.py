"""Reading a checkpoint archive once, from a stream (stdin, a socket): the head, then the rest.

A file is read twice (read_head's few kilobytes, then extract_archive); a stream only once.
`ArchiveStream` reads up to the metadata and stops there, so the caller can check it before
anything is unpacked where it will be used; `extract_rest` then unpacks the remainder. amber's
archives put the metadata first. podman's put artifacts/ and devshm-checkpoint.tar before it:
the members before config.dump and spec.dump are spooled into a private directory, at most
SPOOL_LIMIT bytes, and moved into the work directory by `extract_rest`.

Every member goes through the one extractor (adapters/tar) with the same Policy as a file's,
one set of names across both parts (a name twice is refused), one size limit across both.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from amber.adapters.checkpoint_archive import (
    MAX_DUMP_SIZE,
    MAX_MANIFEST_SIZE,
    ArchiveHead,
    _bad,
    _json_member,
    _label,
    _name,
    _reading,
)
from amber.adapters.podman_format import (
    AMBER_MANIFEST,
    CONFIG_DUMP,
    INVENTORY,
    NETWORK_STATUS,
    SPEC_DUMP,
    STATUS_DUMP,
    AmberManifest,
    ConfigDump,
)
from amber.adapters.tar.compression import CHUNK, SNIFF_BYTES, Counting, decompressor, guarded, sniff
from amber.adapters.tar.extract import Extraction
from amber.adapters.tar.headers import HOSTILE_HINT, members, open_tar
from amber.adapters.tar.names import normalize_name, shown
from amber.adapters.tar.policy import Policy
from amber.errors import ArchiveError

SPOOL_LIMIT = 256 << 20  # what may come before the metadata (podman: artifacts/, devshm-checkpoint.tar)
HEAD = (AMBER_MANIFEST, CONFIG_DUMP, SPEC_DUMP)  # read here, never extracted


class ArchiveStream:
    """One pass over a checkpoint archive read from `source` (any binary reader: a pipe, a
    socket's makefile). Use as a context manager; `head` is read on entry.

    `path` names the archive in messages; `spool` is a directory (made only when needed, removed
    by the caller) for the members before the metadata. Entering raises ArchiveError for an
    empty, non-tar, truncated, corrupt or hostile stream and for metadata of the wrong shape,
    PreconditionError for an amber.manifest of a newer schema."""

    def __init__(self, source: IO[bytes] | Any, path: Path, spool: Path, *, max_total_size: int) -> None:
        self.path = path
        self.label = _label(path)
        self.spool = spool
        self.max_total_size = max_total_size
        self.raw = Counting(source)
        self.seen: set[str] = set()
        self._stack = contextlib.ExitStack()
        self._tar: tarfile.TarFile | None = None
        self._members: Iterator[tarfile.TarInfo] = iter(())
        self._pending: tarfile.TarInfo | None = None
        self._spooled: Extraction | None = None
        self._started = [False]
        self.head: ArchiveHead | None = None

    def __enter__(self) -> ArchiveStream:
        try:
            with _reading(self.path, self._started):
                self.head = self._read_head()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._spooled is not None:
            self._spooled.forget_cache()
            os.close(self._spooled.root_fd)
            self._spooled = None
        self._stack.close()

    def _open(self) -> tuple[Any, tarfile.TarFile]:
        buffered = io.BufferedReader(self.raw, CHUNK)
        first = buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        if not first:
            raise _bad(self.path, "is empty", hint="the stream carried no data: check the command that writes it")
        comp = sniff(first)
        plain = self._stack.enter_context(contextlib.closing(decompressor(buffered, comp, zstd_read_size=CHUNK)))

        def not_tar(exc: BaseException) -> ArchiveError:
            return _bad(self.path, f"is not a tar archive, or is truncated ({exc})")

        tar = self._stack.enter_context(open_tar(guarded(plain), self.label, stream=True, not_tar=not_tar))
        self._started[0] = True
        return comp, tar

    def _read_head(self) -> ArchiveHead:
        comp, tar = self._open()
        self._tar = tar
        self._members = members(tar, self.label)
        found: dict[str, dict[str, Any]] = {}
        for ti in self._members:
            name = _name(ti)
            if name in HEAD:
                self._see(ti)
                limit = MAX_MANIFEST_SIZE if name == AMBER_MANIFEST else MAX_DUMP_SIZE
                found[name] = _json_member(self.path, tar, ti, name, limit)
                continue
            if CONFIG_DUMP in found and SPEC_DUMP in found and name not in (STATUS_DUMP, NETWORK_STATUS):
                self._pending = ti  # the first member of the rest
                break
            self._spool(tar, ti)
        for name in (CONFIG_DUMP, SPEC_DUMP):
            if name not in found:
                raise _bad(self.path, f"lacks {name}: it is not a container checkpoint")
        config = ConfigDump.from_dict(found[CONFIG_DUMP], self.path)
        raw_manifest = found.get(AMBER_MANIFEST)
        manifest = None if raw_manifest is None else AmberManifest.from_dict(raw_manifest, self.path)
        spec = found[SPEC_DUMP]
        return ArchiveHead(self.path, comp, config, spec, manifest, self.raw.count, self._network_status())

    def _see(self, ti: tarfile.TarInfo) -> None:
        """Count a member read here (not extracted) among the names seen: twice is hostile."""
        parts = normalize_name(ti.name)
        member = ti.name if isinstance(parts, str) else "/".join(parts)
        if member in self.seen:
            raise ArchiveError(
                f"{self.label}: refusing member {shown(member)}: it appears twice in the archive", hint=HOSTILE_HINT
            )
        self.seen.add(member)

    def _spool(self, tar: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        if self._spooled is None:
            self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.spool, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            limit = min(SPOOL_LIMIT, self.max_total_size)
            self._spooled = Extraction(self.label, Policy(keep_owner=True, max_total_size=limit), fd, self.spool)
            self._spooled.seen = self.seen
        self._spooled.add(tar, ti, None, None)

    def _network_status(self) -> dict[str, Any] | None:
        """network.status when it came with the metadata (podman writes `null` without a network)."""
        if self._spooled is None or NETWORK_STATUS not in self._spooled.written:
            return None
        try:
            with open(self.spool / NETWORK_STATUS, "rb") as f:
                value = json.loads(f.read(MAX_MANIFEST_SIZE + 1))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def extract_rest(self, dest: Path, *, max_total_size: int | None = None) -> list[str]:
        """Unpack the rest of the archive, and what was spooled, into `dest` (owners kept; the
        metadata members are not written). Returns the names written. rootfs-diff.tar stays a file.

        `max_total_size` (default: the stream's) bounds the whole archive, spooled part included.
        Raises ArchiveError for a truncated, corrupt or hostile stream or one without a checkpoint,
        AmberError when `dest` fails (no space)."""
        assert self._tar is not None, "extract_rest needs the head read first (enter the stream)"
        tar = self._tar
        limit = self.max_total_size if max_total_size is None else max_total_size
        dest.mkdir(parents=True, exist_ok=True)
        spooled = self._spooled
        if spooled is not None:
            spooled.finish()
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        ex = Extraction(self.label, Policy(keep_owner=True, max_total_size=limit), fd, dest)
        ex.seen = self.seen
        ex.total = spooled.total if spooled is not None else 0
        try:
            with _reading(self.path, self._started):
                pending, self._pending = self._pending, None
                if pending is not None:
                    ex.add(tar, pending, None, None)
                for ti in self._members:
                    if _name(ti) in HEAD:
                        self._see(ti)
                        continue
                    ex.add(tar, ti, None, None)
                ex.finish()
        finally:
            ex.forget_cache()
            os.close(ex.root_fd)
        written = [*(spooled.written if spooled is not None else []), *ex.written]
        if spooled is not None:
            _move_into(self.spool, dest)
        if INVENTORY not in written:
            raise _bad(
                self.path,
                f"has no {INVENTORY}: not a complete checkpoint",
                hint="the archive is damaged or is a pre-checkpoint; make a new checkpoint",
            )
        return written


def _move_into(src: Path, dest: Path) -> None:
    """Move the top-level entries of `src` into `dest` (renamed; copied across filesystems)."""
    for entry in sorted(os.listdir(src)):
        try:
            os.rename(src / entry, dest / entry)
        except OSError:
            shutil.move(str(src / entry), str(dest / entry))


__all__ = ["SPOOL_LIMIT", "ArchiveStream"]
