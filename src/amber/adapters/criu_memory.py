"""A dumped process's memory: pagemap-<pid>.img + pages-<id>.img, and what is read from it.

pagemap-<pid>.img holds a head {pages_id} then entries {vaddr, nr_pages (CRIU >= 4.2) or
compat_nr_pages (older), flags or in_parent}. pages-<pages_id>.img holds the raw pages of the
entries present in this image, in pagemap order. From them: the command line and environment
(mm-<pid>.img gives their address ranges), per-process memory sizes, hexdumps and searches.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from amber.adapters.criu_images import ImageDir, Process, number

PAGE_SIZE = mmap.PAGESIZE
PE_PARENT = 1 << 0  # the pages are in the parent (pre-dump) image
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2  # the pages are in this pages image
MAP_SHARED = 0x01
CHUNK = 4 << 20
MAX_ARGS = 1 << 20  # a command line or environment larger than this is cut


@dataclass(frozen=True)
class PagemapEntry:
    vaddr: int
    nr_pages: int
    flags: int

    @property
    def size(self) -> int:
        return self.nr_pages * PAGE_SIZE

    @property
    def end(self) -> int:
        return self.vaddr + self.size

    @property
    def in_pages_file(self) -> bool:
        return bool(self.flags & PE_PRESENT) and not self.flags & PE_PARENT


@dataclass(frozen=True)
class Pagemap:
    pid: int
    pages_id: int
    entries: tuple[PagemapEntry, ...]

    @property
    def memory_size(self) -> int:
        return sum(e.size for e in self.entries)


def read_pagemap(d: ImageDir, pid: int) -> Pagemap | None:
    """The pagemap of `pid`; None when it has none. Raises ArchiveError on a malformed one."""
    name = f"pagemap-{pid}.img"
    entries = d.load(name, required=False)
    if entries is None:
        return None
    if not entries or "pages_id" not in entries[0]:
        raise d.error(name, "has no pagemap head (pages_id)")
    out = []
    for e in entries[1:]:
        nr = number(d, name, e, "nr_pages") if e.get("nr_pages") is not None else number(d, name, e, "compat_nr_pages")
        if "flags" in e:
            flags = number(d, name, e, "flags")
        else:  # images older than flags: in_parent, otherwise present
            flags = PE_PARENT if e.get("in_parent") else PE_PRESENT
        out.append(PagemapEntry(number(d, name, e, "vaddr"), nr, flags))
    return Pagemap(pid, number(d, name, entries[0], "pages_id"), tuple(out))


def pages_file(pagemap: Pagemap) -> str:
    return f"pages-{pagemap.pages_id}.img"


def check_pages(d: ImageDir, pids: Iterable[int]) -> None:
    """Refuse a pages image shorter than its pagemap says (a truncated or cut archive).

    CRIU itself can spin for minutes on such images before it fails. Pages served lazily or
    kept in a parent image are not in the file. Raises ArchiveError naming the image."""
    for pid in pids:
        pagemap = read_pagemap(d, pid)
        if pagemap is None:
            continue
        needed = sum(e.size for e in pagemap.entries if e.in_pages_file and not e.flags & PE_LAZY)
        path = d.path / pages_file(pagemap)
        have = path.stat().st_size if path.is_file() else 0
        if have < needed:
            raise d.error(
                pages_file(pagemap),
                f"holds {have} bytes but pagemap-{pid}.img needs {needed}: the archive is truncated",
            )


def shared_memory_size(d: ImageDir, pid: int) -> int:
    """Bytes of the MAP_SHARED mappings of `pid` (as checkpointctl's memparse reports them)."""
    name = f"mm-{pid}.img"
    mm = d.first(name, required=False) or {}
    vmas = [v for v in mm.get("vmas") or [] if number(d, name, v, "flags") & MAP_SHARED]
    return sum(number(d, name, v, "end") - number(d, name, v, "start") for v in vmas)


class PageReader:
    """Reads a process's dumped memory by virtual address."""

    def __init__(self, d: ImageDir, pagemap: Pagemap) -> None:
        self.d = d
        self.pagemap = pagemap
        self.name = pages_file(pagemap)
        self.path: Path = d.path / self.name
        self._spans: list[tuple[PagemapEntry, int]] = []  # (entry, offset in the pages file)
        offset = 0
        for e in pagemap.entries:
            if e.in_pages_file:
                self._spans.append((e, offset))
                offset += e.size
        self.expected_size = offset
        self._f: IO[bytes] | None = None

    def __enter__(self) -> PageReader:
        if not self.path.is_file():
            raise self.d.error(self.name, f"is missing (the memory of process {self.pagemap.pid})")
        size = self.path.stat().st_size
        if size < self.expected_size:
            raise self.d.error(self.name, f"is truncated: {size} bytes where its pagemap needs {self.expected_size}")
        self._f = self.path.open("rb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _pread(self, offset: int, size: int) -> bytes:
        assert self._f is not None, "use PageReader as a context manager"
        self._f.seek(offset)
        return self._f.read(size)

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end); pages not in this image (not dumped, or in a parent) read as zeros."""
        out = bytearray()
        pos = start
        for e, off in self._spans:
            if e.end <= pos or e.vaddr >= end:
                continue
            if e.vaddr > pos:
                out += bytes(e.vaddr - pos)
                pos = e.vaddr
            stop = min(end, e.end)
            out += self._pread(off + pos - e.vaddr, stop - pos)
            pos = stop
            if pos >= end:
                break
        if pos < end:
            out += bytes(end - pos)
        return bytes(out)

    def regions(self) -> Iterator[tuple[int, int, int]]:
        """(vaddr, size, offset in the pages file) of each contiguous dumped region."""
        cur: list[int] | None = None
        for e, off in self._spans:
            if cur is not None and cur[0] + cur[1] == e.vaddr and cur[2] + cur[1] == off:
                cur[1] += e.size
                continue
            if cur is not None:
                yield cur[0], cur[1], cur[2]
            cur = [e.vaddr, e.size, off]
        if cur is not None:
            yield cur[0], cur[1], cur[2]

    def chunks(self, overlap: int = 0) -> Iterator[tuple[int, bytes]]:
        """(vaddr, data) pieces of at most CHUNK bytes (+ `overlap` bytes of the next piece)."""
        for vaddr, size, off in self.regions():
            pos = 0
            while pos < size:
                n = min(CHUNK + overlap, size - pos)
                yield vaddr + pos, self._pread(off + pos, n)
                pos += CHUNK

    def copy_to(self, out: IO[bytes]) -> int:
        """Write every dumped page (in pagemap order) to `out`; returns the bytes written."""
        total = 0
        for _vaddr, size, off in self.regions():
            pos = 0
            while pos < size:
                data = self._pread(off + pos, min(CHUNK, size - pos))
                out.write(data)
                total += len(data)
                pos += len(data)
        return total


# ===================================== command line and environment ===========================
def read_args(d: ImageDir, process: Process, *, cmdline: bool, env: bool) -> Process:
    """`process` with its command line and/or environment, read from its dumped stack pages."""
    from dataclasses import replace

    if not process.alive_or_stopped or not (cmdline or env):
        return process
    mm = d.first(f"mm-{process.pid}.img", required=False)
    pagemap = read_pagemap(d, process.pid)
    if mm is None or pagemap is None:
        return replace(process, cmdline="" if cmdline else None, environment=() if env else None)
    with PageReader(d, pagemap) as reader:
        args = _area(reader, mm, "mm_arg_start", "mm_arg_end") if cmdline else None
        envs = _area(reader, mm, "mm_env_start", "mm_env_end") if env else None
    return replace(
        process,
        cmdline=None if args is None else args.replace(b"\0", b" ").decode(errors="replace"),
        environment=None if envs is None else tuple(v.decode(errors="replace") for v in envs.split(b"\0") if v),
    )


def _area(reader: PageReader, mm: dict[str, Any], start_key: str, end_key: str) -> bytes:
    name = f"mm-{reader.pagemap.pid}.img"
    start, end = number(reader.d, name, mm, start_key), number(reader.d, name, mm, end_key)
    if end <= start:
        return b""
    return reader.read(start, min(end, start + MAX_ARGS))


# ===================================== hexdump and search =====================================
@dataclass(frozen=True)
class HexRow:
    address: int
    hex: str
    ascii: str
    repeated: bool = False  # a "*" line: rows identical to the previous one were left out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _printable(data: bytes, other: str = ".") -> str:
    return "".join(chr(b) if 32 <= b < 127 else other for b in data)


def hexdump(reader: PageReader, *, compact: bool = True, width: int = 16) -> Iterator[HexRow]:
    """Rows of `width` bytes; with `compact`, runs of identical rows collapse into one `*` row."""
    for vaddr, data in reader.chunks():
        prev: bytes | None = None
        collapsed = False
        for i in range(0, len(data), width):
            row = data[i : i + width]
            if compact and row == prev:
                if not collapsed:
                    yield HexRow(vaddr + i, "", "", repeated=True)
                collapsed = True
                continue
            collapsed = False
            prev = row
            yield HexRow(vaddr + i, " ".join(f"{b:02x}" for b in row), _printable(row))


@dataclass(frozen=True)
class SearchMatch:
    pid: int
    address: int
    match: str  # the matched bytes, non-printable ones as "?"
    context: str  # the match with `context` bytes either side, non-printable ones as "?"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(
    reader: PageReader, pattern: re.Pattern[bytes], *, context: int = 0, limit: int = 10000, overlap: int = 64 << 10
) -> list[SearchMatch]:
    """Every match of `pattern` in the dumped memory (matches spanning regions are not found)."""
    found: dict[int, SearchMatch] = {}
    pid = reader.pagemap.pid
    for vaddr, data in reader.chunks(overlap=overlap):
        for m in pattern.finditer(data):
            if m.start() >= CHUNK and len(data) > CHUNK:
                break  # the overlap is searched again with the next chunk
            addr = vaddr + m.start()
            if addr in found or m.end() == m.start():
                continue
            around = data[max(0, m.start() - context) : m.end() + context]
            found[addr] = SearchMatch(pid, addr, _printable(m.group(0), "?"), _printable(around, "?"))
            if len(found) >= limit:
                return sorted(found.values(), key=lambda s: s.address)
    return sorted(found.values(), key=lambda s: s.address)


__all__ = [
    "HexRow",
    "PAGE_SIZE",
    "PageReader",
    "Pagemap",
    "PagemapEntry",
    "SearchMatch",
    "hexdump",
    "pages_file",
    "read_args",
    "read_pagemap",
    "search",
    "shared_memory_size",
]
