"""Apply by hand, to a copy of an amber archive, the changes another engine needs to restore it.

This is how the tests prove the list of amber-side changes (see tests/integration/test_interop_*.py):
each `Fix` is one change, applied to the archive's members, and a peer restores the result.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
Json = dict[str, Any]


@dataclass
class Fix:
    """Edits to one archive: JSON members changed in place, members added, CRIU root mode, compression."""

    config: list[Callable[[Json], None]] = field(default_factory=list)  # config.dump edits
    spec: list[Callable[[Json], None]] = field(default_factory=list)  # spec.dump edits
    add: dict[str, bytes] = field(default_factory=dict)  # members to add (or replace)
    drop: set[str] = field(default_factory=set)  # members to leave out
    root_mode: int | None = None  # the mode CRIU's files.img records for the container's "/"
    gzip_rootfs_diff: bool = False
    gunzip_rootfs_diff: bool = False
    compression: str = "none"  # the outer tar: none, gzip or zstd


@contextmanager
def _reader(path: Path) -> Iterator[tarfile.TarFile]:
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == ZSTD_MAGIC:
            stream: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(f)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                yield tar
        else:
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                yield tar


@contextmanager
def _writer(path: Path, compression: str) -> Iterator[tarfile.TarFile]:
    with path.open("wb") as f:
        if compression == "zstd":
            with zstandard.ZstdCompressor().stream_writer(f) as z:
                with tarfile.open(fileobj=z, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    yield tar
        else:
            mode = "w|gz" if compression == "gzip" else "w|"
            with tarfile.open(fileobj=f, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                yield tar


def set_root_mode(files_img: bytes, mode: int) -> bytes:
    """files.img with every regular-file entry for "/" (the root and cwd) recorded with `mode`."""
    with tempfile.TemporaryDirectory() as d:
        img = Path(d) / "files.img"
        img.write_bytes(files_img)
        decoded = json.loads(subprocess.run(["crit", "decode", "-i", str(img)], capture_output=True, check=True).stdout)
        for e in decoded["entries"]:
            if e.get("type") == "REG" and e["reg"]["name"] == "/":
                e["reg"]["mode"] = 0o040000 | mode
        (Path(d) / "files.json").write_text(json.dumps(decoded))
        subprocess.run(["crit", "encode", "-i", str(Path(d) / "files.json"), "-o", str(img)], check=True)
        return img.read_bytes()


def read_member(archive: Path, name: str) -> bytes:
    """One member's bytes; raises KeyError naming it when the archive has no such member."""
    with _reader(archive) as tar:
        for ti in tar:
            if ti.name.removeprefix("./") == name:
                f = tar.extractfile(ti)
                assert f is not None
                return f.read()
    raise KeyError(f"{archive} has no member {name}")


def read_json(archive: Path, name: str) -> Json:
    return dict(json.loads(read_member(archive, name)))


def rewrite(src: Path, dst: Path, fix: Fix) -> Path:
    """Copy archive src to dst with `fix` applied; returns dst."""
    added = dict(fix.add)
    with _reader(src) as tin, _writer(dst, fix.compression) as tout:
        for ti in tin:
            name = ti.name.removeprefix("./")
            data = tin.extractfile(ti).read() if ti.isfile() else None  # type: ignore[union-attr]
            if name in added or name in fix.drop:
                continue
            if data is not None:
                data = _edit(name, data, fix)
                ti.size = len(data)
            tout.addfile(ti, io.BytesIO(data) if data is not None else None)
        for name, data in added.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o600
            tout.addfile(ti, io.BytesIO(data))
    return dst


def _edit(name: str, data: bytes, fix: Fix) -> bytes:
    edits = {"config.dump": fix.config, "spec.dump": fix.spec}.get(name)
    if edits:
        doc = json.loads(data)
        for edit in edits:
            edit(doc)
        return json.dumps(doc, indent=2).encode()
    if name == "checkpoint/files.img" and fix.root_mode is not None:
        return set_root_mode(data, fix.root_mode)
    if name == "rootfs-diff.tar" and fix.gzip_rootfs_diff and data[:2] != b"\x1f\x8b":
        return gzip.compress(data)
    if name == "rootfs-diff.tar" and fix.gunzip_rootfs_diff and data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    return data
