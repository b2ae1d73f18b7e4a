"""The tar extractor: a corpus of hostile archives, each refused with nothing written outside the destination."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.adapters.tar.writer import TarWriter
from amber.errors import ArchiveError
from tests.unit.adapters.tar.helpers import extract_names

Entry = tuple[tarfile.TarInfo, bytes | None]


def _ti(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o644 if kind != tarfile.DIRTYPE else 0o755
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def f(name: str, data: bytes = b"data", **attrs: Any) -> Entry:
    return _ti(name, size=len(data), **attrs), data


def d(name: str, **attrs: Any) -> Entry:
    return _ti(name, tarfile.DIRTYPE, **attrs), None


def sym(name: str, target: str) -> Entry:
    return _ti(name, tarfile.SYMTYPE, linkname=target), None


def hard(name: str, target: str) -> Entry:
    return _ti(name, tarfile.LNKTYPE, linkname=target), None


def dev(name: str, kind: bytes = tarfile.CHRTYPE) -> Entry:
    return _ti(name, kind, devmajor=1, devminor=3), None


def make_tar(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def snapshot(top: Path, skip: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p == skip:
                continue
            out[str(p)] = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Path, Callable[..., list[str]]]]:
    """(dest, extract): a destination beside a sentinel directory that must never change."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_bytes(b"keep")
    dest = tmp_path / "dest"
    dest.mkdir()
    before = snapshot(tmp_path, dest)

    def run(*entries: Entry, **kw: Any) -> list[str]:
        opts: dict[str, Any] = {"archive_name": "evil.tar", "keep_owner": False, "allow_special": False}
        opts.update(kw)
        return extract_names(io.BytesIO(make_tar(*entries)), dest, **opts)

    yield dest, run
    assert snapshot(tmp_path, dest) == before, "something was written outside the destination"


HOSTILE: dict[str, tuple[Entry, ...]] = {
    "absolute": (f("/tmp/abs-evil"),),
    "dotdot": (f("../sentinel/keep", b"pwned"),),
    "inner-dotdot": (f("a/../../sentinel/keep", b"pwned"),),
    "symlink-abs-then-write": (sym("l", "/"), f("l/tmp/evil")),
    "symlink-rel-out": (sym("l", "../sentinel"),),
    "symlink-rel-out-then-write": (sym("l", "../sentinel"), f("l/keep", b"pwned")),
    "symlink-dotdot-after-name": (d("a"), sym("a/l", "b/../../../sentinel")),
    "symlink-chain": (d("sub"), sym("sub/d", ".."), sym("sub/e", "d/../../sentinel")),
    "symlink-inside-then-write": (sym("here", "."), f("here/x")),
    "hardlink-dotdot": (hard("h", "../sentinel/keep"),),
    "hardlink-abs": (hard("h", "/etc/passwd"),),
    "hardlink-through-symlink": (sym("s", "."), hard("h", "s/../../sentinel/keep")),
    "hardlink-missing": (hard("h", "nothere"),),
    "hardlink-missing-dir": (hard("h", "no/such/dir/file"),),
    "chardev": (dev("null"),),
    "blockdev": (dev("sda", tarfile.BLKTYPE),),
    "fifo": ((_ti("p", tarfile.FIFOTYPE), None),),
    "duplicate": (f("x", b"one"), f("x", b"two")),
    "duplicate-dot": (f("x", b"one"), f("./x", b"two")),
    "nul-name": (f("a" * 120 + "\0/../../sentinel/keep"),),
    "huge-name": (f("/".join(["n" * 200] * 25)),),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_refused(box: tuple[Path, Callable[..., list[str]]], case: str) -> None:
    _, run = box
    with pytest.raises(ArchiveError) as exc:
        run(*HOSTILE[case])
    assert "evil.tar" in exc.value.message
    assert exc.value.hint


def test_symlink_rooted_mode_allows_absolute_but_never_writes_through(
    box: tuple[Path, Callable[..., list[str]]],
) -> None:
    dest, run = box
    run(sym("etc-link", "/etc"), sym("odd", "etc-link/../etc"), rooted_symlinks=True)
    assert os.readlink(dest / "etc-link") == "/etc"
    with pytest.raises(ArchiveError, match="outside the destination"):
        run(d("a"), sym("a/l", "../../x"), rooted_symlinks=True)
    with pytest.raises(ArchiveError, match="symlink"):
        run(sym("l", "/"), f("l/tmp/evil"), rooted_symlinks=True)


def test_existing_symlink_in_destination_is_not_followed(
    box: tuple[Path, Callable[..., list[str]]], tmp_path: Path
) -> None:
    dest, run = box
    (dest / "pre").symlink_to(tmp_path / "sentinel")
    with pytest.raises(ArchiveError, match="symlink"):
        run(f("pre/keep", b"pwned"))
    # a member at the symlink's own name replaces the link, never writes to its target
    (dest / "f").symlink_to(tmp_path / "sentinel" / "keep")
    run(f("f", b"new"))
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"new"


def test_size_bounds(box: tuple[Path, Callable[..., list[str]]]) -> None:
    _, run = box
    with pytest.raises(ArchiveError, match="expands to more than"):
        run(f("a", b"x" * 600), f("b", b"x" * 600), max_total_size=1000)
    with pytest.raises(ArchiveError, match="more than the 10 allowed"):
        run(f("c", b"x" * 11), max_member_size=10)
    with pytest.raises(ArchiveError, match="to spare"):
        run(f("d", b"x" * 10), reserve=1 << 62)


def test_truncated_and_garbage(box: tuple[Path, Callable[..., list[str]]], tmp_path: Path) -> None:
    dest, _ = box
    data = make_tar(f("big", b"x" * 100_000))
    opts: dict[str, Any] = {"archive_name": "evil.tar", "keep_owner": False, "allow_special": False}
    with pytest.raises(ArchiveError, match="truncated"):
        extract_names(io.BytesIO(data[:5000]), dest, **opts)
    with pytest.raises(ArchiveError, match="not a tar archive"):
        extract_names(io.BytesIO(b"garbage" * 200), dest, **opts)


def test_good_archive_round_trip(box: tuple[Path, Callable[..., list[str]]]) -> None:
    dest, run = box
    names = run(
        d("./"),
        d("dir", mode=0o750, mtime=1_000_000),
        f("dir/file", b"hello", mode=0o640, mtime=2_000_000),
        sym("dir/rel", "file"),
        sym("up", "./dir//file"),
        hard("dir/hard", "dir/file"),
        sym("deep/x/l", "../../dir/file"),
        f("implicit/parent/file"),
    )
    assert names == ["dir", "dir/file", "dir/rel", "up", "dir/hard", "deep/x/l", "implicit/parent/file"]
    assert (dest / "dir/file").read_bytes() == b"hello"
    assert stat.S_IMODE((dest / "dir").stat().st_mode) == 0o750
    assert stat.S_IMODE((dest / "dir/file").stat().st_mode) == 0o640
    assert (dest / "dir").stat().st_mtime == 1_000_000
    assert (dest / "dir/file").stat().st_mtime == 2_000_000
    assert (dest / "dir/hard").stat().st_ino == (dest / "dir/file").stat().st_ino
    assert (dest / "deep/x/l").read_bytes() == b"hello"
    assert (dest / "implicit/parent").is_dir()


def test_want_filter_and_replacing_a_directory(box: tuple[Path, Callable[..., list[str]]]) -> None:
    dest, run = box
    names = run(f("a/keep"), f("b/skip"), want=lambda n: n.startswith("a/"))
    assert names == ["a/keep"] and not (dest / "b").exists()
    (dest / "was-dir" / "sub").mkdir(parents=True)
    run(f("was-dir", b"now a file"))
    assert (dest / "was-dir").read_bytes() == b"now a file"


@pytest.mark.root
def test_owner_mode_xattrs_and_specials(box: tuple[Path, Callable[..., list[str]]]) -> None:
    dest, run = box
    xattrs = {"SCHILY.xattr.user.test": "v\udcff", "SCHILY.xattr.trusted.overlay.opaque": "y"}
    suid = _ti("suid", size=1, mode=0o4755, uid=1234, gid=5678, pax_headers=xattrs)
    run(
        (suid, b"x"),
        dev("null"),
        (_ti("fifo", tarfile.FIFOTYPE, mode=0o640), None),
        keep_owner=True,
        allow_special=True,
    )
    st = (dest / "suid").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)
    assert os.getxattr(dest / "suid", "user.test") == b"v\xff"
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "suid")
    assert stat.S_ISCHR((dest / "null").lstat().st_mode)
    assert os.major((dest / "null").lstat().st_rdev) == 1
    assert stat.S_ISFIFO((dest / "fifo").lstat().st_mode)
    assert stat.S_IMODE((dest / "fifo").lstat().st_mode) == 0o640
    # without keep_owner: our own owner, and no set-id bits
    suid.name = "suid2"
    run((suid, b"x"))
    st = (dest / "suid2").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o755)


def test_writer_reads_back(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "b").write_bytes(b"B" * 3000)
    (src / "d" / "a").write_bytes(b"A")
    os.link(src / "d" / "a", src / "d" / "c")
    (src / "d" / "s").symlink_to("a")
    out = io.BytesIO()
    w = TarWriter(out)
    w.add_bytes("head", b"{}")
    w.add_tree(str(src / "d"), "d")
    w.close()
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["head", "d", "d/a", "d/b", "d/c", "d/s"]
        assert members[4].islnk() and members[4].linkname == "d/a"
        assert members[5].issym() and members[5].linkname == "a"
        data = tar.extractfile("d/b")
        assert data is not None and data.read() == b"B" * 3000
    raw = out.getvalue()
    assert raw[512 * 2 : 512 * 2 + 2] == b"d/"  # directory entries carry a trailing slash
