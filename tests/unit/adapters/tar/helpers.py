"""Calling the tar engine the way the tests were written: keyword options instead of a Policy."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from amber.adapters.tar.extract import extract
from amber.adapters.tar.policy import Policy, Symlinks


def extract_names(
    source: IO[bytes] | tarfile.TarFile,
    dest: Path,
    *,
    archive_name: str,
    want: Callable[[str], bool] | None = None,
    rooted_symlinks: bool = False,
    **policy: Any,
) -> list[str]:
    """extract() with Policy(**policy); the names written."""
    symlinks = Symlinks.ROOTED if rooted_symlinks else Symlinks.CONTAINED
    done = extract(source, dest, Policy(symlinks=symlinks, **policy), archive=archive_name, want=want)
    return done.written


# -- hostile headers --------------------------------------------------------------------------
def pax_member(name: str, data: bytes = b"data", **records: str) -> bytes:
    """One PAX member whose extended header carries `records` verbatim (size="-4096", ...)."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    ti.pax_headers = dict(records)
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data + b"\0" * (-len(data) % 512)


_FIELDS = {"mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12), "mtime": (136, 12)}


def ustar_member(name: str, field: str, raw: bytes) -> bytes:
    """One ustar member whose numeric `field` holds `raw` (malformed octal, base-256), checksum valid."""
    ti = tarfile.TarInfo(name)
    ti.size = 4
    buf = bytearray(ti.tobuf(tarfile.USTAR_FORMAT))
    offset, length = _FIELDS[field]
    buf[offset : offset + length] = raw.ljust(length, b"\0")[:length]
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf) + b"data".ljust(512, b"\0")


def raw_pax_member(name: str, records: bytes) -> bytes:
    """An extended header holding `records` as they are (malformed ones too), then member `name`."""
    xh = tarfile.TarInfo("PaxHeaders/" + name)
    xh.type, xh.size = tarfile.XHDTYPE, len(records)
    ti = tarfile.TarInfo(name)
    ti.size = 4
    pad = b"\0" * (-len(records) % 512)
    return xh.tobuf(tarfile.USTAR_FORMAT) + records + pad + ti.tobuf(tarfile.USTAR_FORMAT) + b"data".ljust(512, b"\0")


_SPARSE = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "4096"}


def sparse_data(lines: list[str], data: bytes = b"data") -> bytes:
    """A PAX 1.0 sparse member's data: its map (`lines`), padded to a block, then `data`."""
    head = "".join(f"{line}\n" for line in lines).encode()
    return head + b"\0" * (-len(head) % 512) + data


# name -> one member with a hostile header; the member is always named "x"
HOSTILE_HEADERS: dict[str, bytes] = {
    "pax-size-negative": pax_member("x", size="-4096"),
    "pax-size-huge": pax_member("x", size=str(10**30)),
    "pax-size-garbage": pax_member("x", size="12abc"),
    "pax-mtime-inf": pax_member("x", mtime="1e400"),
    "pax-uid-huge": pax_member("x", uid=str(1 << 40)),
    "pax-sparse-garbage": pax_member(
        "x", b"data", **{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "z"}
    ),
    "pax-header-huge": pax_member("x", comment="c" * (1 << 20)),  # read whole into memory: bounded
    "pax-record-length-garbage": raw_pax_member("x", b"1x size=1\n"),
    "pax-record-length-negative": raw_pax_member("x", b"-9 size=1\n"),
    "ustar-size-malformed": ustar_member("x", "size", b"12x4"),
    "ustar-size-base256-negative": ustar_member("x", "size", b"\xff" * 12),
    "ustar-mtime-malformed": ustar_member("x", "mtime", b"9z"),
    # GNU sparse 1.0 members (amber writes them for files with holes): a map read without bound,
    # a map claiming more data than the member holds or reaching past the file, a PAX size too
    "sparse-map-no-newline": pax_member("x", b"7" * 4096, **_SPARSE),
    "sparse-map-endless": pax_member("x", b"99999999\n" + b"0\n1\n" * 300_000, **_SPARSE),
    "sparse-map-more-data": pax_member("x", sparse_data(["1", "0", "1000000"]), **_SPARSE),
    "sparse-map-past-size": pax_member("x", sparse_data(["1", "5000", "10"]), **_SPARSE),
    "sparse-map-not-numbers": pax_member("x", sparse_data(["1", "0x10", "4"]), **_SPARSE),
    "sparse-with-pax-size": pax_member("x", sparse_data(["1", "0", "4"]), size="1024", **_SPARSE),
}
END = b"\0" * 1024


def plain_tar(entries: list[tuple[str, bytes]]) -> bytes:
    """A PAX tar of regular files, as Python's tarfile writes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
