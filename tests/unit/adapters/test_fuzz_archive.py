"""Property tests (hypothesis) of the checkpoint archive reader, the metadata parsers and the tar engine.

Bounded for CI: a few hundred examples in all, no deadline, no example database; the file runs in
well under 30 s. The properties: whatever the bytes, only AmberError subclasses escape, and nothing
is ever written outside the destination.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from amber.adapters import checkpoint_archive as ca
from amber.adapters import rootfs_diff
from amber.adapters.tar.names import normalize_name
from amber.engine.runtime_rule import select_runtime
from amber.errors import AmberError, ArchiveError
from tests.unit.adapters.tar.helpers import extract_names

# Random search on developers' machines; in CI (CI=true) the same examples every run.
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CONFIG = {"id": "ab" * 32, "name": "c1", "rootfsImageName": "localhost/demo:latest", "runtime": "crun"}
SPEC = {"ociVersion": "1.0.2", "mounts": [], "process": {"args": ["sh"]}, "root": {"path": "/x"}}


# ====================================== helpers ===============================================
def _archive(tmp: Path, compression: ca.Compression, config: bytes | None = None, spec: bytes | None = None) -> bytes:
    """A small, valid checkpoint archive (config.dump, spec.dump, checkpoint/inventory.img...)."""
    bundle = tmp / "bundle"
    (bundle / "checkpoint").mkdir(parents=True, exist_ok=True)
    (bundle / "checkpoint" / "inventory.img").write_bytes(b"\x54\x51\x10\x58" + b"inv" * 10)
    (bundle / "checkpoint" / "pages-1.img").write_bytes(bytes(range(256)) * 8)
    (bundle / "checkpoint" / "sub").mkdir(exist_ok=True)
    (bundle / "checkpoint" / "sub" / "x").write_bytes(b"x")
    (bundle / "stats-dump").write_bytes(b"stats")
    if not (bundle / "checkpoint" / "link").is_symlink():
        (bundle / "checkpoint" / "link").symlink_to("sub/x")
    head = {
        ca.AMBER_MANIFEST: json.dumps({"schema_version": 1}).encode(),
        ca.CONFIG_DUMP: config if config is not None else json.dumps(CONFIG).encode(),
        ca.SPEC_DUMP: spec if spec is not None else json.dumps(SPEC).encode(),
    }
    dest = tmp / f"valid-{compression}.tar"
    ca.write_archive(dest, bundle, ["stats-dump", "checkpoint"], compression, head=head)
    data = dest.read_bytes()
    dest.unlink()
    shutil.rmtree(bundle)
    return data


@pytest.fixture(scope="module")
def valid() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as d:
        return {str(c): _archive(Path(d), c) for c in (ca.Compression.NONE, ca.Compression.ZSTD, ca.Compression.GZIP)}


def tree(top: Path, skip: Path | None = None) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under `top` but `skip`: mode, size and (for files) content."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [n for n in dirnames if skip is None or Path(dirpath, n) != skip]
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            st_ = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st_.st_mode) else b""
            out[str(p.relative_to(top))] = (st_.st_mode, st_.st_size, data)
    return out


@pytest.fixture
def box() -> Iterator[Path]:
    """A directory for one example: the archive beside `a/b/c/dest` (deep, so `..` lands in the box)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as d:
        yield Path(d)


def fresh(box: Path) -> tuple[Path, Path]:
    for child in box.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (box / "a" / "b" / "c").mkdir(parents=True)
    (box / "a" / "victim").write_text("victim\n")
    return box / "archive", box / "a" / "b" / "c" / "dest"


def only_amber_errors(fn: Callable[[], object]) -> object:
    """Run `fn`: a value, or None when it raised an AmberError; anything else fails the test."""
    try:
        return fn()
    except AmberError:
        return None


def assert_inside(box: Path, dest: Path, before: dict[str, tuple[int, int, bytes]]) -> None:
    assert tree(box, skip=dest) == before, "something was written outside the destination"
    if dest.exists():
        for dirpath, dirnames, filenames in os.walk(dest):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath, name)
                assert os.path.abspath(p).startswith(str(dest) + "/")
                if p.is_symlink():
                    target = os.readlink(p)
                    assert not target.startswith("/"), f"{p} -> {target}"
                    assert os.path.normpath(Path(dirpath, target)).startswith(str(dest)), f"{p} -> {target}"


def read_all(path: Path, dest: Path) -> None:
    """Every reader of a checkpoint archive, each allowed to fail with an AmberError only."""
    only_amber_errors(lambda: ca.read_head(path))
    only_amber_errors(lambda: ca.list_members(path))
    only_amber_errors(lambda: ca.extract_members(path, dest / "m", lambda n: True))
    only_amber_errors(lambda: ca.extract_archive(path, dest / "x", max_total_size=1 << 24))


# ====================================== (a) random bytes, mutations ==========================
@SETTINGS
@given(
    data=st.binary(max_size=2048),
    magic=st.sampled_from([b"", b"\x28\xb5\x2f\xfd", b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00"]),
)
def test_random_bytes(box: Path, data: bytes, magic: bytes) -> None:
    archive, dest = fresh(box)
    archive.write_bytes(magic + data)
    before = tree(box, skip=dest)
    read_all(archive, dest)
    assert_inside(box, dest, before)


Mutation = tuple[str, int, int, bytes]
MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "zero"]),
    st.integers(0, 1 << 20),
    st.integers(0, 7),
    st.binary(min_size=1, max_size=64),
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for op, pos, bit, extra in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << bit
        elif op == "truncate":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = extra
        else:
            buf[i : i + len(extra)] = bytes(len(extra[: len(buf) - i]))
    return bytes(buf)


@SETTINGS
@given(kind=st.sampled_from(["none", "zstd", "gzip"]), ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_archive(box: Path, valid: dict[str, bytes], kind: str, ops: list[Mutation]) -> None:
    archive, dest = fresh(box)
    archive.write_bytes(mutate(valid[kind], ops))
    before = tree(box, skip=dest)
    read_all(archive, dest)
    assert_inside(box, dest, before)


def test_the_valid_archive_reads(box: Path, valid: dict[str, bytes]) -> None:
    """The mutations start from archives every reader accepts."""
    for data in valid.values():
        archive, dest = fresh(box)
        archive.write_bytes(data)
        assert ca.read_head(archive).config == CONFIG
        assert "checkpoint/inventory.img" in [m.name for m in ca.list_members(archive)]
        assert "checkpoint/inventory.img" in ca.extract_archive(archive, dest)


# ====================================== (b) random JSON metadata ==============================
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
RUNTIMES = st.sampled_from(
    [
        "crun",
        "runc",
        "io.containerd.runc.v2",
        "/usr/bin/crun",
        "",
        "../crun",
        "/nonexistent/crun",
        "crun/",
        "/",
        ".",
        "\0",
        "x" * 5000,
    ]
)


def _runtime_is_safe(value: Any) -> bool:
    """select_runtime runs `RUNTIME --version` for any runtime it finds (see the integration
    test runtime-is-host-path): never let the fuzzer name an arbitrary host program."""
    text = str(value or "")
    if text in ("crun", "runc") or not text or "\0" in text:
        return True
    if "/" in text:
        return not os.path.exists(text) or os.path.basename(os.path.realpath(text)) in ("crun", "runc")
    return shutil.which(text, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/usr/local/bin") is None


CONFIGS = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(sorted(CONFIG) + ["createdTime", "amber", "spec"]), JSON | RUNTIMES, max_size=6),
    st.builds(
        lambda runtime, extra: {**CONFIG, **extra, "runtime": runtime},
        JSON | RUNTIMES,
        st.dictionaries(st.sampled_from(sorted(CONFIG)), JSON, max_size=3),
    ),
)


@SETTINGS
@given(config=CONFIGS, spec=JSON, raw=st.booleans(), junk=st.binary(max_size=64))
def test_random_metadata(box: Path, config: Any, spec: Any, raw: bool, junk: bytes) -> None:
    archive, dest = fresh(box)
    data = junk if raw else json.dumps(config).encode()
    archive.write_bytes(_archive(box, ca.Compression.NONE, config=data, spec=json.dumps(spec).encode()))
    head = only_amber_errors(lambda: ca.read_head(archive))
    if head is None:
        return
    assert isinstance(head, ca.ArchiveHead)
    assert isinstance(head.config, dict) and isinstance(head.spec, dict)
    runtime = head.config.get("runtime")
    assume(_runtime_is_safe(runtime))
    only_amber_errors(lambda: select_runtime(str(runtime or ""), None, "x"))


@SETTINGS
@given(value=JSON | st.lists(st.text(max_size=30), max_size=6), junk=st.binary(max_size=64), raw=st.booleans())
def test_random_deleted_files(value: Any, junk: bytes, raw: bool) -> None:
    data = junk if raw else json.dumps(value).encode()
    paths = only_amber_errors(lambda: rootfs_diff.parse_deleted_files(data, "x"))
    if paths is not None:
        assert isinstance(paths, list) and all(isinstance(p, str) and p and "\0" not in p for p in paths)


def test_deleted_files_refuses_what_climbs(tmp_path: Path) -> None:
    """apply_deleted_files never removes outside the root, whatever the parsed paths are."""
    root = tmp_path / "a" / "root"
    (root / "etc").mkdir(parents=True)
    (tmp_path / "victim").write_text("v")
    (root / "evil").symlink_to(str(tmp_path))
    (root / "up").symlink_to("../..")
    for path in ["/../../victim", "/evil/victim", "/up/victim", "/etc/../../victim"]:
        try:
            rootfs_diff.apply_deleted_files(rootfs_diff.parse_deleted_files(json.dumps([path]).encode(), "x"), root)
        except ArchiveError:
            pass
        assert (tmp_path / "victim").read_text() == "v", path


# ====================================== (c) random member names ===============================
COMPONENT = st.one_of(
    st.sampled_from(["..", ".", "", "a", "b", "\0", "x" * 300, "é", " ", "..."]), st.text(alphabet="ab./\0", max_size=6)
)
NAME = st.one_of(
    st.builds(
        lambda absolute, parts: ("/" if absolute else "") + "/".join(parts),
        st.booleans(),
        st.lists(COMPONENT, min_size=1, max_size=20),
    ),
    st.text(max_size=60),
    st.builds(lambda n: "a/" * n + "f", st.integers(1, 300)),  # deeper would overflow os.walk/rmtree here
)


def _member(name: str, kind: str, target: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.pax_headers = {"path": name}  # keeps a NUL (a ustar name field would end at it)
    if kind == "symlink":
        ti.type, ti.linkname = tarfile.SYMTYPE, target
        ti.pax_headers["linkpath"] = target
    elif kind == "hardlink":
        ti.type, ti.linkname = tarfile.LNKTYPE, target
        ti.pax_headers["linkpath"] = target
    elif kind == "dir":
        ti.type = tarfile.DIRTYPE
    else:
        ti.size = 5
    return ti


def _tar(members: list[tarfile.TarInfo]) -> bytes:
    out = io.BytesIO()
    for ti in members:
        out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if ti.isreg():
            out.write(b"data\n".ljust(tarfile.BLOCKSIZE, b"\0"))
    out.write(b"\0" * 2 * tarfile.BLOCKSIZE)
    return out.getvalue()


@SETTINGS
@given(
    members=st.lists(
        st.tuples(NAME, st.sampled_from(["file", "dir", "symlink", "hardlink"]), NAME), min_size=1, max_size=4
    ),
    rooted=st.booleans(),
)
def test_random_member_names(box: Path, members: list[tuple[str, str, str]], rooted: bool) -> None:
    archive, dest = fresh(box)
    archive.write_bytes(_tar([_member(n, k, t) for n, k, t in members]))
    before = tree(box, skip=dest)
    with archive.open("rb") as f:
        try:
            written = extract_names(
                f, dest, archive_name="fuzz", keep_owner=False, allow_special=False, rooted_symlinks=rooted
            )
        except ArchiveError:
            written = []
        except AmberError as exc:  # a name the filesystem refuses (see test_overlong_component_...)
            assert "too long" in str(exc), exc
            written = []
    assert tree(box, skip=dest) == before, "something was written outside the destination"
    for i, name in enumerate(written):
        assert not name.startswith("/") and ".." not in name.split("/") and "\0" not in name
        # A later member may replace it, or a directory above it (`a/0` then a file `a`).
        replaced = any(later == name or name.startswith(later + "/") for later in written[i + 1 :])
        assert replaced or os.path.lexists(dest / name)
    if not rooted:
        assert_inside(box, dest, before)


def test_overlong_component_is_an_archive_error(tmp_path: Path) -> None:
    data = _tar([_member("dir/" + "x" * 300, "file", "")])
    with pytest.raises(ArchiveError, match="x" * 50):
        extract_names(io.BytesIO(data), tmp_path / "dest", archive_name="fuzz", keep_owner=False, allow_special=False)


@SETTINGS
@given(name=NAME)
def test_normalize_name_is_safe(name: str) -> None:
    parts = normalize_name(name)
    if isinstance(parts, tuple):
        assert all(p not in ("", ".", "..") and "/" not in p and "\0" not in p for p in parts)
        assert not name.startswith("/")


# ====================================== (e) sparse members ===================================
SPARSE_LINE = st.one_of(
    st.integers(min_value=0, max_value=1 << 34).map(str),
    st.sampled_from(["", "-1", "0x10", "9" * 30, "1e3", " 4", "\xff"]),
)


@SETTINGS
@given(
    lines=st.lists(SPARSE_LINE, max_size=12),
    realsize=st.one_of(st.integers(min_value=0, max_value=1 << 40).map(str), st.sampled_from(["", "-1", "x"])),
    data=st.binary(max_size=1500),
    stream=st.booleans(),
)
@example(lines=["2", "0", "4", "8192", "4"], realsize="1073741824", data=b"datadata", stream=False)
@example(lines=["2", "0", "4", "8192", "4"], realsize="1073741824", data=b"datadata", stream=True)
def test_random_sparse_members(box: Path, lines: list[str], realsize: str, data: bytes, stream: bool) -> None:
    """A GNU sparse (PAX 1.0) member with any map, size and data: extracted within its map and
    size, or an ArchiveError; never another exception, a spin or a write outside the destination."""
    archive, dest = fresh(box)
    head = "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")
    body = head + b"\0" * (-len(head) % tarfile.BLOCKSIZE) + data
    ti = tarfile.TarInfo("s")
    ti.size, ti.mode = len(body), 0o644
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": realsize}
    raw = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + body + b"\0" * (-len(body) % 512)
    archive.write_bytes(raw + b"\0" * 1024)
    before = tree(box, skip=dest)
    with archive.open("rb") as f:
        src: Any = io.BufferedReader(_Pipe(f)) if stream else f
        try:
            extract_names(src, dest, archive_name="fuzz", max_total_size=1 << 40)
        except ArchiveError:
            pass
    assert tree(box, skip=dest) == before, "something was written outside the destination"
    out = dest / "s"
    if out.exists():
        st_ = out.stat()
        assert st_.st_size == int(realsize) and st_.st_blocks * 512 <= len(data) + (64 << 10)


class _Pipe(io.RawIOBase):
    """A file read as a stream (not seekable), as a pipe or stdin is."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return int(self.f.readinto(b))
