"""Image layers: extract one layer tarball into a directory in overlayfs lower-layer format.

The tarball may be plain, gzip, zstd, bzip2 or xz (sniffed from its magic bytes) and is read
once, as a stream, by the tar engine (amber.adapters.tar); two sha256 digests are computed on
the way: of the bytes as read (the blob digest) and of the uncompressed tar (the diff_id, which
names the layer in the store).

What is OCI-layer specific lives here: the extraction policy (a later member replaces an earlier
one, owners, device nodes and FIFOs only as root, any symlink target since links are never
followed, only user./security./trusted./system.posix_acl_ xattrs and never trusted.overlay.*),
and the whiteouts, which become what overlayfs expects in a lower layer: `.wh.NAME` a char device
0:0 named NAME, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.

Extraction goes into a fresh temp dir (`.tmp-layer-*`) beside the final place; `commit_layer`
renames it into place. A failed extraction leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amber.adapters.tar.compression import (
    CHUNK,
    READ_ERRORS,
    SNIFF_BYTES,
    Compression,
    Counting,
    Readable,
    decompressor,
    guarded,
    sniff,
)
from amber.adapters.tar.extract import WHITEOUT_PREFIX, Extraction, extract
from amber.adapters.tar.policy import OVERLAY_XATTR_PREFIX, Duplicates, Policy, Symlinks
from amber.errors import AmberError, ArchiveError

log = logging.getLogger("amber.layers")

TEMP_PREFIX = ".tmp-"
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PREFIXES = ("user.", "security.", "trusted.", "system.posix_acl_")
HOSTILE_HINT = "the tarball is malformed or hostile; get the image again from a source you trust"


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

    `label` names the tarball in errors. On any failure the temp dir is removed. Raises
    ArchiveError for a hostile or broken tarball, AmberError when the store's filesystem fails.
    """
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(dir=work_dir, prefix=f"{TEMP_PREFIX}layer-"))
    try:
        return _extract_into(src, tmp, label)
    except BaseException:
        discard(tmp)
        raise


def _extract_into(src: Readable, tmp: Path, label: str) -> ExtractedLayer:
    blob_raw = Counting(src, hashed=True)
    blob = io.BufferedReader(blob_raw, CHUNK)
    kind = sniff(blob.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    with contextlib.ExitStack() as stack:
        plain_raw = blob_raw
        plain = blob
        if kind is not Compression.NONE:
            dec = stack.enter_context(contextlib.closing(decompressor(blob, kind, zstd_read_size=CHUNK)))
            plain_raw = Counting(dec, hashed=True)
            plain = io.BufferedReader(plain_raw, CHUNK)
        done = extract(guarded(plain), tmp, layer_policy(), archive=label)
        try:
            _drain(plain)
            _drain(blob)
        except READ_ERRORS as exc:
            raise ArchiveError(
                f"{label} is corrupt or truncated: {exc}",
                hint="get the tarball again; if it came from an image, re-export it",
            ) from exc
    assert blob_raw.sha is not None and plain_raw.sha is not None
    return ExtractedLayer(
        path=tmp,
        diff_id=plain_raw.sha.hexdigest(),
        blob_digest=blob_raw.sha.hexdigest(),
        blob_size=blob_raw.count,
        tar_size=plain_raw.count,
        size=done.size,
        compression=kind,
    )


def _drain(stream: Readable) -> None:
    while stream.read(CHUNK):
        pass


def layer_policy() -> Policy:
    """How an OCI layer is extracted; owners and special files only when we are root."""
    root = os.geteuid() == 0
    return Policy(
        keep_owner=root,
        allow_special=root,
        special_refusal="it is a device node or FIFO, which only root may create",
        special_hint="run amber as root",
        symlinks=Symlinks.ANY,
        xattr_allowed=_layer_xattr,
        whiteout=_whiteout,
        duplicates=Duplicates.REPLACE,
        root_entry=True,
        hint=HOSTILE_HINT,
    )


def _layer_xattr(name: str) -> bool:
    return name.startswith(XATTR_PREFIXES) and not name.startswith(OVERLAY_XATTR_PREFIX)


def _whiteout(ex: Extraction, ti: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
    """A `.wh.` member: an opaque directory, a deleted name, or aufs metadata (skipped)."""
    member = "/".join(parts)
    base = parts[-1]
    if base == OPAQUE_MARKER:
        os.setxattr(ex.dir_fd(member, parts[:-1]), OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        log.debug("%s: skipping aufs metadata %s", ex.archive, member)
        return
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise ex.refuse(member, "it is a whiteout that names no file")
    if os.geteuid() != 0:
        raise ex.refuse(member, "it is a whiteout, which needs root to be created (a 0:0 device)", "run amber as root")
    fd = ex.dir_fd(member, parts[:-1])
    ex.clear(fd, (*parts[:-1], hidden), keep_dir=False)
    os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=fd)


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
