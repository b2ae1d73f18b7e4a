"""layers: one layer tarball -> an overlayfs lower dir; whiteouts, metadata, hostile members."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard

from amber.adapters import layers
from amber.adapters.tar.compression import Compression, sniff
from amber.adapters.tar.names import split_name
from amber.errors import ArchiveError

Entry = tuple[tarfile.TarInfo, bytes | None]
MTIME = 1_700_000_000


def _ti(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = MTIME
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def special(name: str, kind: bytes, **attrs: Any) -> Entry:
    return _ti(name, kind, **attrs), None


def f(name: str, data: bytes = b"data", **attrs: Any) -> Entry:
    return _ti(name, size=len(data), **attrs), data


def d(name: str, **attrs: Any) -> Entry:
    return _ti(name, tarfile.DIRTYPE, **attrs), None


def sym(name: str, target: str) -> Entry:
    return _ti(name, tarfile.SYMTYPE, linkname=target), None


def hard(name: str, target: str) -> Entry:
    return _ti(name, tarfile.LNKTYPE, linkname=target), None


def tar_bytes(entries: Sequence[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if kind == "xz":
        return lzma.compress(data)
    return data


def extract(tmp_path: Path, data: bytes) -> layers.ExtractedLayer:
    return layers.extract_layer(io.BytesIO(data), tmp_path / "layers", label="layer.tar")


def work_is_empty(tmp_path: Path) -> bool:
    return not any((tmp_path / "layers").iterdir())


# -- content and metadata ----------------------------------------------------------------------


@pytest.mark.root
def test_files_dirs_links_and_metadata(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            d("./"),
            d("etc", mode=0o555, mtime=MTIME - 100),
            f("etc/motd", b"hello\n", uid=1234, gid=4321, mode=0o640),
            f("bin/tool", b"#!/bin/sh\n", mode=0o4755),  # parent created implicitly
            sym("bin/sh", "/bin/tool"),
            hard("bin/tool2", "bin/tool"),
            f("etc/cap", b"x", pax_headers={"SCHILY.xattr.user.note": "hi"}),
        ]
    )
    layer = extract(tmp_path, data)
    root = layer.path
    assert (root / "etc/motd").read_bytes() == b"hello\n"
    st = os.lstat(root / "etc/motd")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o640)
    assert st.st_mtime == MTIME
    assert stat.S_IMODE(os.lstat(root / "bin/tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(root / "etc").st_mode) == 0o555
    assert os.lstat(root / "etc").st_mtime == MTIME - 100
    assert stat.S_IMODE(os.lstat(root / "bin").st_mode) == 0o755
    assert os.readlink(root / "bin/sh") == "/bin/tool"
    assert os.lstat(root / "bin/tool2").st_ino == os.lstat(root / "bin/tool").st_ino
    assert os.getxattr(root / "etc/cap", "user.note") == b"hi"
    assert layer.size == len(b"hello\n") + len(b"#!/bin/sh\n") + 1
    assert layer.diff_id == hashlib.sha256(data).hexdigest() == layer.blob_digest
    assert layer.tar_size == len(data)


@pytest.mark.root
@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz"])
def test_compressed_layers_have_the_digest_of_the_plain_tar(tmp_path: Path, kind: str) -> None:
    data = tar_bytes([f("a/b", b"x" * 100_000), sym("a/c", "b")])
    blob = compress(data, kind)
    layer = extract(tmp_path, blob)
    assert layer.compression == kind
    assert layer.diff_id == hashlib.sha256(data).hexdigest()
    assert layer.blob_digest == hashlib.sha256(blob).hexdigest()
    assert layer.blob_size == len(blob)
    assert (layer.path / "a/b").read_bytes() == b"x" * 100_000


@pytest.mark.root
def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            d("etc"),
            f("etc/.wh.deleteme", b""),
            d("var/cache"),
            f("var/cache/.wh..wh..opq", b""),
            f("var/cache/new", b"n"),
            f(".wh..wh.plnk", b""),
        ]
    )
    root = extract(tmp_path, data).path
    st = os.lstat(root / "etc/deleteme")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (root / "etc/.wh.deleteme").exists()
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (root / "var/cache/.wh..wh..opq").exists()
    assert (root / "var/cache/new").read_bytes() == b"n"
    assert not os.path.lexists(root / ".wh..wh.plnk")


@pytest.mark.root
def test_devices_and_fifos_as_root(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            special("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
            special("dev/loop9", tarfile.BLKTYPE, devmajor=7, devminor=9, mode=0o660),
            special("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        ]
    )
    root = extract(tmp_path, data).path
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_ISBLK(os.lstat(root / "dev/loop9").st_mode)
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)


@pytest.mark.root
def test_later_members_replace_earlier_ones(tmp_path: Path) -> None:
    data = tar_bytes([f("a", b"file"), d("a"), f("a/x", b"x"), f("b/y", b"y"), f("b", b"now a file")])
    root = extract(tmp_path, data).path
    assert (root / "a/x").read_bytes() == b"x"
    assert (root / "b").read_bytes() == b"now a file"


@pytest.mark.root
def test_overlay_xattrs_from_the_tarball_are_dropped(tmp_path: Path) -> None:
    data = tar_bytes([d("x", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})])
    root = extract(tmp_path, data).path
    assert "trusted.overlay.redirect" not in os.listxattr(root / "x")


@pytest.mark.root
def test_commit_moves_into_place_once(tmp_path: Path) -> None:
    data = tar_bytes([f("a", b"1")])
    first = extract(tmp_path, data)
    dest = tmp_path / "layers" / first.diff_id
    assert layers.commit_layer(first, dest) is True
    second = extract(tmp_path, data)
    assert layers.commit_layer(second, dest) is False
    assert not second.path.exists()
    assert sorted(p.name for p in (tmp_path / "layers").iterdir()) == [first.diff_id]


def test_discard_stale_removes_temp_dirs_only(tmp_path: Path) -> None:
    (tmp_path / ".tmp-layer-x" / "sub").mkdir(parents=True)
    (tmp_path / "abc").mkdir()
    layers.discard_stale(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["abc"]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("./a//b/", ("a", "b")),
        ("a/./b", ("a", "b")),
        (".", ()),
        ("/etc/passwd", None),
        ("a/../../b", None),
        ("..", None),
        ("a\x00b", None),
        ("a" * 4097, None),
    ],
)
def test_split_name(name: str, ok: tuple[str, ...] | None) -> None:
    if ok is None:
        with pytest.raises(ValueError):
            split_name(name)
    else:
        assert split_name(name) == ok


# -- hostile members ------------------------------------------------------------------------------


def _hostile(outside: Path) -> dict[str, list[Entry]]:
    return {
        "absolute": [f(str(outside / "abs"), b"x")],
        "dotdot": [f("../escape", b"x")],
        "dotdot-deep": [d("a"), f("a/../../escape", b"x")],
        "symlink-dir-then-write": [sym("link", str(outside)), f("link/pwned", b"x")],
        "relative-symlink-then-write": [sym("link", "../../../../../../.." + str(outside)), f("link/pwned", b"x")],
        "symlink-dir-then-dir": [sym("link", str(outside)), d("link/sub"), f("link/sub/pwned", b"x")],
        "hardlink-outside": [hard("h", str(outside / "target"))],
        "hardlink-dotdot": [hard("h", "../target")],
        "hardlink-not-a-member": [hard("h", "etc/shadow")],
        "hardlink-through-symlink": [sym("l", str(outside)), hard("h", "l/target")],
        "long-name": [f("a/" * 2100 + "x", b"x")],
        "nul-in-pax-name": [f("ok", b"x", pax_headers={"path": "a\x00b"})],
        "unknown-type": [special("weird", b"V")],
        "whiteout-of-nothing": [f("dir/.wh.", b"")],
    }


HOSTILE = sorted(_hostile(Path("/x")))


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("secret")
    data = tar_bytes(_hostile(outside)[case])
    with pytest.raises(ArchiveError) as info:
        extract(tmp_path, data)
    assert "layer.tar" in info.value.message and info.value.hint
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert (outside / "target").read_text() == "secret"
    assert work_is_empty(tmp_path)
    assert not (tmp_path / "escape").exists()


NOISE = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(256))
TRUNCATED_GZIP = gzip.compress(tar_bytes([f("a", NOISE)]))[:4000]


@pytest.mark.parametrize(
    "data",
    [b"not a tar at all" * 100, TRUNCATED_GZIP, b"\x28\xb5\x2f\xfd" + b"garbage" * 20],
    ids=["not-tar", "truncated-gzip", "bad-zstd"],
)
def test_corrupt_input_is_an_archive_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ArchiveError) as info:
        extract(tmp_path, data)
    assert "layer.tar" in info.value.message
    assert work_is_empty(tmp_path)


def test_sniff() -> None:
    assert sniff(b"\x1f\x8b\x08") == Compression.GZIP
    assert sniff(b"\x28\xb5\x2f\xfd\x00") == Compression.ZSTD
    assert sniff(b"\xfd7zXZ\x00") == Compression.XZ
    assert sniff(b"etc/") == Compression.NONE
