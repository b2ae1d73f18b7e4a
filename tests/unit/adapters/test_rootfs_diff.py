"""The rootfs diff: from an overlay upper directory to rootfs-diff.tar + deleted.files and back."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from amber.adapters import rootfs_diff as rd
from amber.adapters.archive_writer import Streamed, write_archive
from amber.adapters.tar.compression import Compression, open_tar_stream
from amber.adapters.tar.writer import SizeChanged
from amber.errors import AmberError, ArchiveError


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _lower(root: Path) -> None:
    """What the image holds, as seen in a fresh container root."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("hello")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "var" / "cache" / "old").mkdir(parents=True)
    (root / "var" / "cache" / "old" / "stale").write_text("stale")
    (root / "var" / "cache" / "keep-name").write_text("lower")


@pytest.fixture
def upper(tmp_path: Path) -> Path:
    """An upper dir: /etc/motd deleted, /etc/new added, /var/cache replaced (opaque), links, a FIFO."""
    up = tmp_path / "upper"
    (up / "etc").mkdir(parents=True)
    _whiteout(up / "etc" / "motd")
    (up / "etc" / "new").write_text("new")
    os.chown(up / "etc" / "new", 1000, 1000)
    os.chmod(up / "etc" / "new", 0o640)
    os.setxattr(up / "etc" / "new", "user.note", b"\x00\xff")
    (up / "var" / "cache").mkdir(parents=True)
    os.setxattr(up / "var" / "cache", "trusted.overlay.opaque", b"y")
    (up / "var" / "cache" / "keep-name").write_text("upper")
    (up / "usr" / "bin").mkdir(parents=True)
    (up / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
    os.link(up / "usr" / "bin" / "tool", up / "usr" / "bin" / "tool2")
    (up / "usr" / "bin" / "link").symlink_to("/usr/bin/tool")
    os.mkfifo(up / "fifo")
    (up / "empty-new-dir").mkdir()
    return up


@pytest.mark.root
def test_create_and_apply_round_trip(upper: Path, tmp_path: Path) -> None:
    tar = tmp_path / "rootfs-diff.tar"
    diff = rd.create_rootfs_diff(upper, tar)
    assert diff.tar_written and tar.is_file()
    assert diff.deleted == ["/etc/motd", "/var/cache"]
    # etc/new, fifo, empty-new-dir, usr/bin/{link,tool,tool2}, var/cache (opaque), var/cache/keep-name
    assert diff.added_or_changed == 8
    with tarfile.open(tar) as t:
        members = {m.name: m for m in t.getmembers()}
    assert "etc/motd" not in members and "etc/new" in members
    assert members["usr/bin/tool2"].islnk() and members["usr/bin/link"].issym()
    assert members["etc/new"].uid == 1000 and members["etc/new"].mode == 0o640
    assert members["etc/new"].pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == b"\0\xff"
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)
    assert all(not n.startswith(("/", "./")) for n in members)

    root = tmp_path / "root"
    _lower(root)
    rd.apply_deleted_files(diff.deleted, root)  # deletions first: the opaque dir comes back from the tar
    rd.apply_rootfs_diff(tar, root)
    assert not (root / "etc" / "motd").exists()
    assert (root / "etc" / "passwd").exists()
    assert (root / "etc" / "new").read_text() == "new"
    assert (root / "etc" / "new").stat().st_uid == 1000
    assert os.getxattr(root / "etc" / "new", "user.note") == b"\0\xff"
    assert not (root / "var" / "cache" / "old").exists()
    assert (root / "var" / "cache" / "keep-name").read_text() == "upper"
    assert (root / "usr" / "bin" / "tool").stat().st_ino == (root / "usr" / "bin" / "tool2").stat().st_ino
    assert os.readlink(root / "usr" / "bin" / "link") == "/usr/bin/tool"
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)
    assert (root / "empty-new-dir").is_dir()


@pytest.mark.root
def test_only_deletions_write_no_tar(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "etc" / "sub").mkdir(parents=True)
    _whiteout(up / "etc" / "motd")
    _whiteout(up / "etc" / "sub" / "x")
    _whiteout(up / "gone")
    diff = rd.create_rootfs_diff(up, tmp_path / "d.tar")
    assert diff == rd.RootfsDiff(0, ["/etc/motd", "/etc/sub/x", "/gone"], False)
    assert list(tmp_path.iterdir()) == [up]


@pytest.mark.root
def test_metacopy_upper_is_refused(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    up.mkdir()
    (up / "f").write_text("")
    os.setxattr(up / "f", "trusted.overlay.metacopy", b"")
    with pytest.raises(AmberError, match="metacopy"):
        rd.create_rootfs_diff(up, tmp_path / "d.tar")


def test_apply_rootfs_diff_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "etc").symlink_to(tmp_path / "outside")  # a hostile root can't redirect writes either
    for name, target in (("../outside/x", None), ("etc/x", None), ("l", "../../outside")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo(name)
            if target:
                ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti, io.BytesIO(b""))
        (tmp_path / "d.tar").write_bytes(buf.getvalue())
        with pytest.raises(ArchiveError, match="refusing member"):
            rd.apply_rootfs_diff(tmp_path / "d.tar", root)
    assert list((tmp_path / "outside").iterdir()) == []


def test_apply_deleted_files_stays_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "tmp" / "precious").write_text("inside")
    (root / "abs").symlink_to(outside)  # absolute: resolved in the root -> root/<outside path>
    (root / "rel").symlink_to("../../../../../outside")  # `..` stops at the root
    (root / "to-tmp").symlink_to("/tmp")
    (root / "final-link").symlink_to(outside / "precious")
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f").write_text("f")

    rd.apply_deleted_files(
        ["/abs/precious", "/rel/precious", "/final-link", "/missing", "/missing/x", "d", "/to-tmp/precious"], root
    )
    assert (outside / "precious").read_text() == "x"
    assert not (root / "final-link").is_symlink()  # the link itself was removed, not its target
    assert not (root / "d").exists()
    assert not (root / "tmp" / "precious").exists()  # /to-tmp/precious is /tmp/precious in the container
    for bad in ("/../outside/precious", "a/../../b", "/", ""):
        with pytest.raises(ArchiveError, match="refusing to delete"):
            rd.apply_deleted_files([bad], root)
    assert (outside / "precious").read_text() == "x"


def test_parse_deleted_files() -> None:
    assert rd.parse_deleted_files(b'["/root", "/etc/motd"]', "a.tar") == ["/root", "/etc/motd"]
    for bad in (b"{", b'{"a": 1}', b"[1]", b'["a\\u0000b"]', b'[""]', json.dumps(["x" * 5000]).encode()):
        with pytest.raises(ArchiveError, match="a.tar: deleted.files"):
            rd.parse_deleted_files(bad, "a.tar")
    with pytest.raises(ArchiveError, match="more than"):
        rd.parse_deleted_files(b" " * (rd.MAX_DELETED_FILES_SIZE + 1), "a.tar")


@pytest.mark.root
@pytest.mark.parametrize("comp", [Compression.NONE, Compression.ZSTD])
def test_planned_diff_streams_the_tar_a_file_would_hold(upper: Path, tmp_path: Path, comp: Compression) -> None:
    big = upper / "usr" / "big"
    big.write_bytes(os.urandom(3 << 20) + b"x" * 777)  # more than one copy chunk, not block aligned
    with open(upper / "usr" / "holes", "wb") as f:  # a sparse member: the plan counts its map and data
        f.seek(64 << 20)
        f.write(b"data after a hole")
        f.truncate(96 << 20)
    on_disk = tmp_path / "rootfs-diff.tar"
    written = rd.create_rootfs_diff(upper, on_disk)
    planned = rd.plan_rootfs_diff(upper)
    assert planned.diff == written
    assert planned.tar_size == on_disk.stat().st_size
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    dest = tmp_path / "out.tar"
    member = Streamed("rootfs-diff.tar", planned.tar_size, planned.write)
    write_archive(dest, bundle, [member], comp, head={"a": b"1"})
    with open(dest, "rb") as raw, open_tar_stream(raw) as stream, tarfile.open(fileobj=stream, mode="r|") as t:
        for ti in t:
            if ti.name == "rootfs-diff.tar":
                got = t.extractfile(ti)
                assert got is not None and got.read() == on_disk.read_bytes()
                break
        else:
            pytest.fail("no rootfs-diff.tar in the archive")


@pytest.mark.root
def test_planned_diff_of_a_tree_that_changed_is_refused(upper: Path, tmp_path: Path) -> None:
    planned = rd.plan_rootfs_diff(upper)
    (upper / "etc" / "new").write_text("grown since the plan: " + "y" * 600)
    dest = tmp_path / "out.tar.zst"
    with pytest.raises(SizeChanged, match="rootfs-diff.tar took"):
        write_archive(
            dest, tmp_path, [Streamed("rootfs-diff.tar", planned.tar_size, planned.write)], Compression.ZSTD, head={}
        )
    assert not dest.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
