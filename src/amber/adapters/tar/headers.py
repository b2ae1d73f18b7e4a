"""Reading tar headers as hostile input: every reader gets its members through `members()`.

tarfile trusts the numbers in a header. A PAX `size=-4096` moves its read position backwards
(a seekable reader then loops for ever), `size=10**30` or `mtime=inf` later raise OverflowError,
a malformed PAX number silently becomes 0, and a malformed octal field ends the archive early
without a word. Here each of those is an ArchiveError naming the member, raised as soon as its
header is read, before anything acts on it.
"""

from __future__ import annotations

import math
import re
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from amber.adapters.tar.compression import READ_ERRORS
from amber.adapters.tar.names import shown
from amber.errors import ArchiveError

HOSTILE_HINT = "the archive is malformed or hostile; do not use it, or recreate it from its source"
MAX_SIZE = (1 << 63) - 1  # off_t
MAX_ID = (1 << 32) - 2  # uid_t/gid_t; 2**32-1 is chown's "leave as is"
MAX_DEV = (1 << 32) - 1
MAX_MODE = 0o7777777  # seven octal digits: permission and (Go's) file-type bits
MAX_TIME = 9.2e9  # seconds: nanoseconds still fit in 64 bits
_INT = re.compile(r"[0-9]{1,20}")
_FLOAT = re.compile(r"-?[0-9]{1,20}(\.[0-9]{0,20})?")
_PAX_NUMBERS = {
    "size": _INT,
    "uid": _INT,
    "gid": _INT,
    "mtime": _FLOAT,
    "atime": _FLOAT,
    "ctime": _FLOAT,
    "GNU.sparse.size": _INT,
    "GNU.sparse.realsize": _INT,
    "GNU.sparse.offset": _INT,
    "GNU.sparse.numbytes": _INT,
    "GNU.sparse.numblocks": _INT,
    "GNU.sparse.major": _INT,
    "GNU.sparse.minor": _INT,
}


MAX_SPARSE_MAP = 1 << 20  # bytes of a PAX 1.0 sparse map (Go's archive/tar allows as much)
MAX_EXTENDED_HEADER = 1 << 20  # bytes of a PAX or GNU long-name header, read whole (Go's limit too)
_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_MAX_MAP_LINE = 24

_InvalidHeader: type[Exception] = getattr(tarfile, "InvalidHeaderError")  # noqa: B009 - not in typeshed


class BadHeader(Exception):
    """A header tarfile could not take apart: a malformed number or extended record."""

    def __init__(self, member: str, why: str) -> None:
        super().__init__(why)
        self.member = member
        self.why = why


class CheckedTarInfo(tarfile.TarInfo):
    """A TarInfo that reports a malformed header as BadHeader instead of ending the archive."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Any:
        try:
            return super().frombuf(buf, encoding, errors)
        except _InvalidHeader:
            if not _checksum_ok(buf):
                raise  # not a header at all: tarfile's own rules (garbage, end of archive)
            name = buf[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            raise BadHeader(name, "a numeric field of its header is malformed") from None

    def _proc_gnusparse_10(self, next: Any, pax_headers: dict[str, str], tar: Any) -> None:
        """tarfile's own reads a map without bounds (a map with no newline is read to the end of
        the archive, quadratically): this one reads at most MAX_SPARSE_MAP bytes of map, lines of
        decimal numbers only."""
        buf = b""
        numbers: list[int] = []
        fields: int | None = None
        read = 0
        while fields is None or len(numbers) < 2 * fields:
            if b"\n" not in buf:
                if len(buf) > _MAX_MAP_LINE:
                    raise BadHeader(next.name, "its sparse map holds a malformed number")
                if read >= MAX_SPARSE_MAP:
                    raise BadHeader(next.name, f"its sparse map is longer than {MAX_SPARSE_MAP} bytes")
                block = tar.fileobj.read(tarfile.BLOCKSIZE)
                if len(block) < tarfile.BLOCKSIZE:
                    raise BadHeader(next.name, "its sparse map is truncated")
                buf += block
                read += len(block)
                continue
            line, buf = buf.split(b"\n", 1)
            if not _INT.fullmatch(line.decode("ascii", "replace")):
                raise BadHeader(next.name, "its sparse map holds a malformed number")
            if fields is None:
                fields = int(line)
            else:
                numbers.append(int(line))
        next.offset_data = tar.fileobj.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))

    def _proc_member(self, tar: Any) -> Any:
        if self.type in _EXTENDED_TYPES and self.size > MAX_EXTENDED_HEADER:  # tarfile reads it into memory
            raise BadHeader(self.name, f"its extended header is {self.size} bytes, more than {MAX_EXTENDED_HEADER}")
        try:
            return super()._proc_member(tar)  # type: ignore[misc]
        except (_InvalidHeader, ValueError, OverflowError) as exc:
            raise BadHeader(self.name, f"its extended header is malformed ({exc})") from None


def _checksum_ok(buf: bytes | bytearray) -> bool:
    try:
        stored = tarfile.nti(buf[148:156])  # type: ignore[attr-defined]
    except (_InvalidHeader, ValueError):
        return False
    return stored in tarfile.calc_chksums(buf)  # type: ignore[attr-defined]


def header_problem(ti: tarfile.TarInfo) -> str | None:
    """Why a header's numbers cannot be trusted, or None."""
    for key, raw in ti.pax_headers.items():
        pattern = _PAX_NUMBERS.get(key)
        if pattern is not None and not pattern.fullmatch(raw):
            return f"its PAX header has {key}={shown(raw, 40)}, not a valid number"
    if not 0 <= ti.size <= MAX_SIZE:
        return f"its header gives size {_num(ti.size)}"
    for what, value, top in (("uid", ti.uid, MAX_ID), ("gid", ti.gid, MAX_ID), ("mode", ti.mode, MAX_MODE)):
        if not 0 <= value <= top:
            return f"its header gives {what} {_num(value)}"
    if ti.ischr() or ti.isblk():
        for what, dev in (("device major", ti.devmajor), ("device minor", ti.devminor)):
            if not 0 <= dev <= MAX_DEV:
                return f"its header gives {what} {_num(dev)}"
    for key in ("mtime", "atime", "ctime"):
        t = float(ti.mtime) if key == "mtime" else float(ti.pax_headers.get(key, 0))
        if not (math.isfinite(t) and abs(t) <= MAX_TIME):
            return f"its header gives {key} {t}"
    return _sparse_problem(ti)


def sparse_of(ti: tarfile.TarInfo) -> list[tuple[int, int]] | None:
    """A sparse member's map, (offset, length) of each extent; None for any other member."""
    sparse: list[tuple[int, int]] | None = getattr(ti, "sparse", None)  # typeshed says bytes
    return sparse


def _sparse_problem(ti: tarfile.TarInfo) -> str | None:
    sparse = sparse_of(ti)
    if sparse is None:
        return None
    if "size" in ti.pax_headers and "GNU.sparse.major" in ti.pax_headers:
        return "it is a sparse member with a PAX size record (its readers disagree where it ends)"
    end = 0
    for offset, length in sparse:
        if offset < 0 or length < 0 or offset + length > ti.size or length and offset < end:
            return "its sparse map is out of order or larger than the file"
        end = max(end, offset + length)  # an empty entry anywhere is nothing (old GNU pads with them)
    return None


def _num(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _refusal(archive: str, member: str, why: str) -> ArchiveError:
    return ArchiveError(f"{archive}: refusing member {shown(member)}: {why}", hint=HOSTILE_HINT)


def open_tar(
    fileobj: IO[bytes],
    archive: str,
    *,
    stream: bool,
    bufsize: int = tarfile.RECORDSIZE,
    not_tar: Callable[[BaseException], ArchiveError] | None = None,
) -> tarfile.TarFile:
    """A TarFile reading `fileobj` (stream mode with `bufsize`, or seekable when `stream` is False).

    Stream mode reads `bufsize` bytes at a time (the extractor's copy reads past it): keep it
    small where only headers are wanted.

    Raises ArchiveError (naming `archive`) when its first header is malformed, and when it is not
    a tar archive or cannot be read (`not_tar(exc)` when given)."""
    try:
        if stream:
            return tarfile.open(fileobj=fileobj, mode="r|", bufsize=bufsize, tarinfo=CheckedTarInfo)
        return tarfile.open(fileobj=fileobj, mode="r:", tarinfo=CheckedTarInfo)
    except BadHeader as exc:
        raise _refusal(archive, exc.member, exc.why) from None
    except READ_ERRORS as exc:
        if not_tar is not None:
            raise not_tar(exc) from exc
        if isinstance(exc, tarfile.ReadError | EOFError):
            raise ArchiveError(
                f"{archive} is not a tar archive ({exc})", hint="give a tar archive, optionally gzip or zstd compressed"
            ) from exc
        raise ArchiveError(
            f"{archive} is corrupt ({exc})", hint="copy the archive again; it is incomplete or damaged"
        ) from exc


def next_member(tar: tarfile.TarFile, archive: str) -> tarfile.TarInfo | None:
    """The next member, its header checked (header_problem); None at the end of the archive.

    Raises ArchiveError for a malformed header or a truncated or corrupt stream."""
    try:
        tar.members.clear()  # type: ignore[attr-defined]  # else tarfile keeps every header it read
        ti = tar.next()
    except BadHeader as exc:
        raise _refusal(archive, exc.member, exc.why) from None
    except (ValueError, OverflowError) as exc:
        raise ArchiveError(f"{archive} has a malformed header: {exc}", hint=HOSTILE_HINT) from None
    except READ_ERRORS as exc:
        raise ArchiveError(
            f"{archive} is truncated or corrupt: {exc}", hint="copy the archive again; it is incomplete or damaged"
        ) from exc
    if ti is not None and (why := header_problem(ti) or _sparse_data_problem(tar, ti)) is not None:
        raise _refusal(archive, ti.name, why)
    return ti


def _sparse_data_problem(tar: tarfile.TarFile, ti: tarfile.TarInfo) -> str | None:
    """A sparse member's map must not claim more data than the member holds."""
    sparse = sparse_of(ti)
    if sparse is None or not ti.isreg():
        return None
    held = int(getattr(tar, "offset")) - ti.offset_data  # noqa: B009 - where the next header starts
    if sum(length for _, length in sparse) > held:
        return f"its sparse map holds more data than the member's {max(held, 0)} bytes"
    return None


def members(tar: tarfile.TarFile, archive: str) -> Iterator[tarfile.TarInfo]:
    """Every member of `tar`, each header checked as next_member does."""
    while (ti := next_member(tar, archive)) is not None:
        yield ti
