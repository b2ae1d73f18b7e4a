"""A corpus of hand-made hostile checkpoint archives, each built around a *valid* head.

`build_corpus(base, out_dir, sentinel)` takes a real archive (a plain tar written by
`amber checkpoint --export --compress none`), reads its members and writes one archive per case in
`CASES`, each with one hostile change: a member that climbs out, a symlink then a write through
it, a hard link out, a device node, a duplicate, a rootfs diff or deleted.files that leaves the
root, bad names, a decompression bomb, malformed streams and metadata, damaged CRIU images.

Every escaping path aims at `sentinel` (a directory the test watches): whatever climbs out, by
whichever route, lands there, so one snapshot of it shows any write outside. `make_sentinel`
fills it and `snapshot` records it.

`image_corpus(out_dir, sentinel)` builds hostile rootfs tarballs for `amber image import`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import zstandard

from amber.engine.task_credentials import CAP_NUMBERS
from amber.errors import ExitCode
from tests.unit.adapters.tar.helpers import pax_member, sparse_data

# ====================================== tar entries ===========================================
VICTIM_FILE = "victim.txt"
VICTIM_DIR = "victim-dir"
FAKE_RUNTIME = "fake-runc"
RAN_MARKER = "runtime-ran"
CLIMB = "../" * 24  # more `..` than any destination is deep: what climbs lands at `/`

BAD = frozenset({ExitCode.BAD_ARCHIVE})
AMBER_CODES = frozenset(c for c in ExitCode if c not in (ExitCode.OK, ExitCode.INTERRUPTED))


@dataclasses.dataclass
class Entry:
    ti: tarfile.TarInfo
    data: bytes = b""


def _ti(
    name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, linkname: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode = kind, size, linkname, mode
    ti.mtime = 1_700_000_000
    return ti


def file(name: str, data: bytes = b"pwned\n") -> Entry:
    return Entry(_ti(name, size=len(data)), data)


def directory(name: str) -> Entry:
    return Entry(_ti(name, tarfile.DIRTYPE, mode=0o755))


def symlink(name: str, target: str) -> Entry:
    return Entry(_ti(name, tarfile.SYMTYPE, linkname=target, mode=0o777))


def hardlink(name: str, target: str) -> Entry:
    return Entry(_ti(name, tarfile.LNKTYPE, linkname=target))


def special(name: str, kind: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3) -> Entry:
    ti = _ti(name, kind, mode=0o666)
    ti.devmajor, ti.devminor = major, minor
    return Entry(ti)


def read_entries(path: Path) -> list[Entry]:
    """Every member of a tar (plain or zstd) with its data."""
    raw = path.read_bytes()
    if raw.startswith(b"\x28\xb5\x2f\xfd"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for ti in tar:
            f = tar.extractfile(ti) if ti.isreg() else None
            out.append(Entry(copy.copy(ti), f.read() if f is not None else b""))
    return out


def tar_bytes(entries: Sequence[Entry], *, end: bool = True) -> bytes:
    """A PAX tar of `entries`, exactly as given (names are not checked nor normalized)."""
    buf = io.BytesIO()
    for e in entries:
        ti = copy.copy(e.ti)
        if ti.isreg():
            ti.size = len(e.data)
        buf.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if ti.isreg() and e.data:
            buf.write(e.data)
            buf.write(b"\0" * (-len(e.data) % tarfile.BLOCKSIZE))
    if end:
        buf.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return buf.getvalue()


def zstd(data: bytes | Iterable[bytes], level: int = 3) -> bytes:
    """One zstd frame of `data` (chunks are streamed, so a bomb is never whole in memory)."""
    chunks = [data] if isinstance(data, bytes) else data
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=level).stream_writer(out, closefd=False) as w:
        for chunk in chunks:
            w.write(chunk)
    return out.getvalue()


# ====================================== the sentinel ==========================================
def make_sentinel(path: Path) -> Path:
    """The directory escapes aim at: a file, a 0700 directory and an executable that, if ever run,
    leaves a marker beside it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / VICTIM_FILE).write_text("precious\n")
    (path / VICTIM_DIR).mkdir(mode=0o700, exist_ok=True)
    os.chmod(path / VICTIM_DIR, 0o700)
    script = path / FAKE_RUNTIME
    script.write_text(f"#!/bin/sh\necho \"$@\" >> '{path / RAN_MARKER}'\necho 'runc version 1.1.0'\n")
    script.chmod(0o755)
    return path


def snapshot(top: Path, skip: Sequence[Path] = ()) -> dict[str, tuple[Any, ...]]:
    """Every entry under `top` (not under `skip`): type, mode, owner, links, size, content hash."""
    out: dict[str, tuple[Any, ...]] = {}
    skipped = {str(s) for s in skip}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size, digest)
    st = os.lstat(top)
    out["."] = (st.st_mode, st.st_uid, st.st_gid)
    return out


# ====================================== the cases =============================================
@dataclasses.dataclass(frozen=True)
class Ctx:
    base: list[Entry]
    sentinel: Path

    @property
    def rel(self) -> str:
        """The sentinel's path without its leading `/`."""
        return str(self.sentinel).lstrip("/")

    def names(self) -> list[str]:
        return [e.ti.name for e in self.base]

    def after_head(self, *extra: Entry) -> list[Entry]:
        """The base with `extra` right after spec.dump (read before any checkpoint image)."""
        i = self.names().index("spec.dump") + 1
        return [*self.base[:i], *extra, *self.base[i:]]

    def appended(self, *extra: Entry) -> list[Entry]:
        return [*self.base, *extra]

    def without(self, name: str) -> list[Entry]:
        return [e for e in self.base if e.ti.name != name]

    def replaced(self, name: str, data: bytes) -> list[Entry]:
        out = []
        for e in self.base:
            if e.ti.name == name:
                e = Entry(copy.copy(e.ti), data)
            out.append(e)
        return out

    def json_member(self, name: str) -> dict[str, Any]:
        value = json.loads(next(e.data for e in self.base if e.ti.name == name))
        assert isinstance(value, dict)
        return value

    def with_json(self, name: str, change: Callable[[dict[str, Any]], object]) -> list[Entry]:
        value = self.json_member(name)
        change(value)
        return self.replaced(name, json.dumps(value).encode())

    def with_rootfs_diff(self, inner: Sequence[Entry], deleted: list[str] | None = None) -> list[Entry]:
        out = [e for e in self.base if e.ti.name not in ("rootfs-diff.tar", "deleted.files")]
        out.append(file("rootfs-diff.tar", tar_bytes(inner)))
        if deleted is not None:
            out.append(file("deleted.files", json.dumps(deleted).encode()))
        return out

    def image(self, name: str) -> bytes:
        return next(e.data for e in self.base if e.ti.name == f"checkpoint/{name}")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Ctx], bytes]
    codes: frozenset[int] = BAD  # the exit codes `amber restore -i` may give
    may_restore: bool = False  # harmless when confined: a successful restore is acceptable too
    bug: str | None = None  # a known bug in src/ met by `amber restore` (the test is a strict xfail)
    inspect_bug: str | None = None  # ... met by `amber archive inspect|show|memparse`
    ext: str = ".tar"


def _plain(entries: Callable[[Ctx], list[Entry]]) -> Callable[[Ctx], bytes]:
    return lambda ctx: tar_bytes(entries(ctx))


def _zst(entries: Callable[[Ctx], list[Entry]]) -> Callable[[Ctx], bytes]:
    return lambda ctx: zstd(tar_bytes(entries(ctx)))


def _zst_streamed(entries: Callable[[Ctx], list[Entry]]) -> Callable[[Ctx], bytes]:
    """zstd, with amber.manifest saying deleted.files comes first: the restore unpacks the
    rootfs diff onto the root as it reads the archive (engine/restore_root.py), not from a copy."""

    def build(ctx: Ctx) -> bytes:
        out = []
        for e in entries(ctx):
            if e.ti.name == "amber.manifest":
                e = Entry(copy.copy(e.ti), json.dumps({**json.loads(e.data), "deleted_files_first": True}).encode())
            out.append(e)
        return zstd(tar_bytes(out))

    return build


# --- hostile members ---------------------------------------------------------------------------
def _dotdot(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(file(f"{CLIMB}{ctx.rel}/escape"))


def _dotdot_short(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(file("../../escape"))


def _absolute(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(file(f"{ctx.sentinel}/absolute"))


def _symlink_write(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(symlink("checkpoint/link", "/"), file(f"checkpoint/link/{ctx.rel}/pwned"))


def _symlink_relative_out(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(
        symlink("checkpoint/up", "../../../../../../../../.."), file(f"checkpoint/up/{ctx.rel}/pwned")
    )


def _symlink_dir_then_member(ctx: Ctx) -> list[Entry]:
    """A symlink named like the checkpoint directory itself, before the real images come."""
    return ctx.after_head(symlink("checkpoint", str(ctx.sentinel)))


def _hardlink_passwd(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(hardlink("checkpoint/passwd", "/etc/passwd"))


def _hardlink_sentinel(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(hardlink("checkpoint/victim", f"{CLIMB}{ctx.rel}/{VICTIM_FILE}"))


def _hardlink_via_symlink(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(symlink("checkpoint/s", "x"), hardlink("checkpoint/h", "checkpoint/s/../../etc/passwd"))


def _chardev(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(special("checkpoint/dev"))


def _blockdev(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(special("checkpoint/disk", tarfile.BLKTYPE, 8, 0))


def _fifo(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(special("checkpoint/fifo", tarfile.FIFOTYPE, 0, 0))


def _duplicate_config(ctx: Ctx) -> list[Entry]:
    second = ctx.json_member("config.dump")
    second["runtime"] = "runc" if second.get("runtime") == "crun" else "crun"
    return ctx.after_head(file("config.dump", json.dumps(second).encode()))


def _duplicate_image(ctx: Ctx) -> list[Entry]:
    return ctx.appended(file("checkpoint/inventory.img", b"\0" * 64))


def nul_named(name: str) -> Entry:
    """A file whose name holds a NUL: a PAX `path` record keeps it (a ustar name would end there)."""
    e = file(name)
    e.ti.pax_headers = {"path": name}
    return e


def _nul_name(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(nul_named("checkpoint/a\0b"))


def _long_name(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(file("checkpoint/" + "a" * 5000))


def _deep_name(ctx: Ctx) -> list[Entry]:
    return ctx.after_head(file("checkpoint/" + "d/" * 2100 + "f"))


# --- rootfs diff and deleted.files ----------------------------------------------------------------
def _diff_symlink_write(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([symlink("etc/x", "/"), file(f"etc/x/{ctx.rel}/pwned")])


def _diff_rooted_symlink_write(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([symlink("evil", str(ctx.sentinel)), file("evil/pwned")])


def _diff_dotdot(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([file(f"{CLIMB}{ctx.rel}/pwned")])


def _diff_dotdot_short(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([file("../../pwned")])


def _diff_absolute(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([file(f"{ctx.sentinel}/pwned")])


def _diff_hardlink_out(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([hardlink("etc/passwd2", f"{CLIMB}{ctx.rel}/{VICTIM_FILE}")])


def _diff_raw(ctx: Ctx, inner: bytes) -> list[Entry]:
    """The base with a rootfs-diff.tar of raw members `inner` (and no deleted.files)."""
    out = [e for e in ctx.base if e.ti.name not in ("rootfs-diff.tar", "deleted.files")]
    return [*out, file("rootfs-diff.tar", inner + b"\0" * (2 * tarfile.BLOCKSIZE))]


def sparse_member(name: str, size: int, lines: list[str], data: bytes = b"data") -> bytes:
    """A GNU sparse member (PAX 1.0) of apparent `size`: its map `lines`, then `data`."""
    records = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": str(size)}
    return pax_member(name, sparse_data(lines, data), **records)


def _diff_sparse_1pib(ctx: Ctx) -> list[Entry]:
    """A sparse file of 1 PiB (4 bytes of data) in the rootfs diff: past max_unpacked_size."""
    return _diff_raw(ctx, sparse_member("tmp/huge", 1 << 50, ["1", str((1 << 50) - 4), "4"]))


def _diff_sparse_map_lies(ctx: Ctx) -> list[Entry]:
    """A sparse map claiming 1 MB of data in a member holding 4 bytes."""
    return _diff_raw(ctx, sparse_member("tmp/liar", 1 << 20, ["1", "0", str(1 << 20)]))


def _diff_sparse_map_endless(ctx: Ctx) -> list[Entry]:
    """A sparse map of 2 MB of numbers, past the 1 MiB bound (tarfile's own reads it all)."""
    endless = b"99999999\n" + b"0\n1\n" * (1 << 19)
    records = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "4096"}
    return _diff_raw(ctx, pax_member("tmp/endless", endless, **records))


def _diff_sparse_honest(ctx: Ctx) -> list[Entry]:
    """A 3 GiB sparse file holding 4 bytes: restores, and costs 4 bytes (harmless)."""
    return _diff_raw(ctx, sparse_member("tmp/sparse", 3 << 30, ["1", str(1 << 30), "4"]))


def _diff_not_a_tar(ctx: Ctx) -> list[Entry]:
    out = [e for e in ctx.base if e.ti.name != "rootfs-diff.tar"]
    return [*out, file("rootfs-diff.tar", b"this is not a tar archive\n" * 40)]


def _deleted_dotdot(ctx: Ctx) -> list[Entry]:
    inner = [file("tmp/ok", b"ok\n")]
    return ctx.with_rootfs_diff(inner, [f"/{CLIMB}{ctx.rel}/{VICTIM_FILE}"])


def _deleted_dotdot_dir(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([file("tmp/ok", b"ok\n")], [f"/../../../{ctx.rel}"])


def _deleted_through_symlink(ctx: Ctx) -> list[Entry]:
    """deleted.files names a path under a symlink the rootfs diff plants, pointing at the sentinel."""
    return ctx.with_rootfs_diff([symlink("evil", str(ctx.sentinel))], [f"/evil/{VICTIM_FILE}", f"/evil/{VICTIM_DIR}"])


def _deleted_through_relative_symlink(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([symlink("up", "../../../../../../../../..")], [f"/up/{ctx.rel}/{VICTIM_FILE}"])


def _deleted_root(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([file("tmp/ok", b"ok\n")], ["/"])


def _deleted_not_a_list(ctx: Ctx) -> list[Entry]:
    return [*ctx.with_rootfs_diff([file("tmp/ok", b"ok\n")]), file("deleted.files", b'{"/etc": 1}')]


def _deleted_nul(ctx: Ctx) -> list[Entry]:
    return ctx.with_rootfs_diff([file("tmp/ok", b"ok\n")], ["/etc/\0passwd"])


# --- bombs -----------------------------------------------------------------------------------------
def _bomb_config(ctx: Ctx) -> bytes:
    """config.dump declared and really 100 MB (of spaces): the head reader must stop at its size."""
    size = 100 << 20
    head = [e for e in ctx.base if e.ti.name == "amber.manifest"]
    rest = [e for e in ctx.base if e.ti.name not in ("amber.manifest", "config.dump")]
    ti = _ti("config.dump", size=size, mode=0o600)

    def chunks() -> list[bytes]:
        out = [tar_bytes(head, end=False), ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")]
        out += [b" " * (1 << 20)] * (size >> 20)
        out.append(tar_bytes(rest))
        return out

    return zstd(chunks(), level=1)


def _bomb_trailing(ctx: Ctx) -> bytes:
    """A member's header says 6 bytes; after it the stream expands to 1 GiB of garbage."""
    head = ctx.base[: ctx.names().index("spec.dump") + 1]
    chunks = [tar_bytes([*head, file("stats-dump", b"stats\n")], end=False)]
    chunks += [b"A" * (1 << 20)] * 1024
    return zstd(chunks, level=1)


def _bomb_huge_member(ctx: Ctx) -> bytes:
    """A member declaring 1 PiB (more than any free space): refused at its header."""
    ti = _ti("checkpoint/pages-9.img", size=1 << 50)
    head = ctx.base[: ctx.names().index("spec.dump") + 1]
    return zstd(
        [tar_bytes(head, end=False), ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), b"\0" * (4 << 20)],
        level=1,
    )


def _bomb_big_deleted_files(ctx: Ctx) -> list[Entry]:
    """A 20 MB deleted.files (the cap is 16 MB)."""
    paths = json.dumps(["/x" * 100] * ((20 << 20) // 200)).encode()
    return [*ctx.with_rootfs_diff([file("tmp/ok", b"ok\n")]), file("deleted.files", paths)]


def zero_diff_chunks(size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The member rootfs-diff.tar (header included) whose inner tar holds one `size`-byte file of
    zeros, as chunks: a bomb that is never whole in memory."""
    inner = _ti("tmp/zeros", size=size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    inner_size = len(inner) + size + (-size % tarfile.BLOCKSIZE) + 2 * tarfile.BLOCKSIZE
    yield _ti("rootfs-diff.tar", size=inner_size, mode=0o600).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    yield inner
    left = size
    zeros = b"\0" * chunk
    while left:
        n = min(left, chunk)
        yield zeros if n == chunk else zeros[:n]
        left -= n
    yield b"\0" * ((-size % tarfile.BLOCKSIZE) + 2 * tarfile.BLOCKSIZE + (-inner_size % tarfile.BLOCKSIZE))


def zero_bomb_chunks(ctx: Ctx, size: int, *, declare: int) -> Iterator[bytes]:
    """The base archive with its rootfs diff replaced by `size` bytes of zeros, its amber.manifest
    declaring a rootfs diff of `declare` bytes (1: a lie that would make a restore choose memory)."""

    def declared(manifest: dict[str, Any]) -> None:
        manifest.setdefault("sizes", {})["rootfs_diff"] = declare

    base = ctx.with_json("amber.manifest", declared)
    yield tar_bytes([e for e in base if e.ti.name not in ("rootfs-diff.tar", "deleted.files")], end=False)
    yield from zero_diff_chunks(size)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _bomb_manifest_lies(ctx: Ctx) -> bytes:
    """A rootfs diff of 300 MB of zeros that amber.manifest declares as 1 byte: a restore that
    trusted it would unpack it all into /dev/shm (RAM)."""
    return zstd(zero_bomb_chunks(ctx, 300 << 20, declare=1), level=1)


# --- malformed -----------------------------------------------------------------------------------
def _truncated(ctx: Ctx) -> bytes:
    data = tar_bytes(ctx.base)
    return data[: len(data) * 3 // 5 + 100]


def _truncated_zstd(ctx: Ctx) -> bytes:
    data = zstd(tar_bytes(ctx.base))
    return data[: len(data) * 3 // 5]


def _truncated_in_head(ctx: Ctx) -> bytes:
    return tar_bytes(ctx.base)[:1100]


def _wrong_magic(ctx: Ctx) -> bytes:
    data = bytearray(tar_bytes(ctx.base))
    data[257:262] = b"XXXXX"
    return b"PK\x03\x04" + bytes(data[4:])


def _zstd_magic_garbage(ctx: Ctx) -> bytes:
    return b"\x28\xb5\x2f\xfd" + os.urandom(4096)


def _gzip_magic_garbage(ctx: Ctx) -> bytes:
    return b"\x1f\x8b\x08" + b"\xff" * 4096


def _empty(ctx: Ctx) -> bytes:
    return b""


def _ustar_header_only(ctx: Ctx) -> bytes:
    return tar_bytes(ctx.base)[:512]


def _config(change: Callable[[dict[str, Any]], object]) -> Callable[[Ctx], list[Entry]]:
    return lambda ctx: ctx.with_json("config.dump", change)


def _spec(change: Callable[[dict[str, Any]], object]) -> Callable[[Ctx], list[Entry]]:
    return lambda ctx: ctx.with_json("spec.dump", change)


def _config_not_json(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("config.dump", b'{"name": "cnt", "runtime": ')


def _config_list(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("config.dump", b'["name", "cnt"]')


def _config_binary(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("config.dump", b"\xff\xfe\x00garbage")


def _spec_list(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("spec.dump", b"[]")


def _config_dir(ctx: Ctx) -> list[Entry]:
    return [directory("config.dump") if e.ti.name == "config.dump" else e for e in ctx.base]


def _config_symlink(ctx: Ctx) -> list[Entry]:
    return [symlink("config.dump", "/etc/passwd") if e.ti.name == "config.dump" else e for e in ctx.base]


def _no_config(ctx: Ctx) -> list[Entry]:
    return ctx.without("config.dump")


def _manifest_bad_sizes(ctx: Ctx) -> list[Entry]:
    return ctx.with_json("amber.manifest", lambda m: m.update(sizes={"checkpoint": "lots", "memory_pages": [1]}))


def _no_inventory(ctx: Ctx) -> list[Entry]:
    return ctx.without("checkpoint/inventory.img")


def _corrupt_pstree(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("checkpoint/pstree.img", ctx.image("pstree.img")[:8] + b"\xff" * 64)


def _garbage_pstree(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("checkpoint/pstree.img", b"\x00\x01\x02 not a CRIU image")


def _corrupt_inventory(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("checkpoint/inventory.img", b"\xde\xad\xbe\xef" * 4)


def _truncated_pages(ctx: Ctx) -> list[Entry]:
    return ctx.replaced("checkpoint/pages-1.img", ctx.image("pages-1.img")[:100])


# --- found while building the corpus (see the report of the tests) ---------------------------------
def _runtime_path(ctx: Ctx) -> list[Entry]:
    return ctx.with_json("config.dump", lambda c: c.update(runtime=str(ctx.sentinel / FAKE_RUNTIME)))


def _devshm_bind(ctx: Ctx) -> list[Entry]:
    """spec.dump bind-mounts the sentinel at /dev/shm; devshm-checkpoint.tar then fills it."""

    def change(spec: dict[str, Any]) -> None:
        for m in spec["mounts"]:
            if m.get("destination") == "/dev/shm":
                m.update(type="bind", source=str(ctx.sentinel), options=["rbind", "rw"])

    entries = ctx.with_json("spec.dump", change)
    return [*entries, file("devshm-checkpoint.tar", tar_bytes([file("pwned-by-devshm")]))]


def _devshm_no_source(ctx: Ctx) -> list[Entry]:
    def change(spec: dict[str, Any]) -> None:
        for m in spec["mounts"]:
            if m.get("destination") == "/dev/shm":
                m.clear()
                m.update(destination="/dev/shm", type="bind")

    return [*ctx.with_json("spec.dump", change), file("devshm-checkpoint.tar", tar_bytes([file("x")]))]


def _cwd_climbs(ctx: Ctx) -> list[Entry]:
    """files.img names the process's cwd `/../../..<sentinel>/victim-dir`, mode 0777: restore gives
    recorded root/cwd directories their modes back, and must not do so outside the root."""
    import pycriu  # the system's CRIU python bindings

    fs = pycriu.images.load(io.BytesIO(ctx.image("fs-1.img")))
    cwd = fs["entries"][0]["cwd_id"]
    files = pycriu.images.load(io.BytesIO(ctx.image("files.img")))
    for entry in files["entries"]:
        if entry.get("id") == cwd:
            entry["reg"]["name"] = f"/{CLIMB}{ctx.rel}/{VICTIM_DIR}"
            entry["reg"]["mode"] = stat.S_IFDIR | 0o777
    out = io.BytesIO()
    pycriu.images.dump(files, out)
    return ctx.replaced("checkpoint/files.img", out.getvalue())


# --- privileges beyond amber's (engine/confinement.py) ------------------------------------------
ALL_CAPS = [f"CAP_{n}" for n in CAP_NUMBERS]


FORGED_CAPS = 0x1FFFEFFFFFF  # all but CAP_SYS_RESOURCE, as in the attack (with it, CRIU fails here)


def forged_credentials(
    ctx: Ctx, sets: Sequence[str] = ("cap_eff", "cap_prm", "cap_bnd", "cap_inh", "cap_amb")
) -> list[Entry]:
    """core-*.img: every capability in every set of `sets`, seccomp off, no_new_privs cleared."""
    import pycriu  # the system's CRIU python bindings

    out = ctx.base
    for name in [n.removeprefix("checkpoint/") for n in ctx.names() if n.startswith("checkpoint/core-")]:
        core = pycriu.images.load(io.BytesIO(ctx.image(name)))
        thread = core["entries"][0]["thread_core"]
        for key in sets:
            thread["creds"][key] = [FORGED_CAPS & 0xFFFFFFFF, FORGED_CAPS >> 32]
        thread["creds"]["no_new_privs"] = 0
        thread["seccomp_mode"] = "disabled"
        data = io.BytesIO()
        pycriu.images.dump(core, data)
        out = Ctx(out, ctx.sentinel).replaced(f"checkpoint/{name}", data.getvalue())
    return out


def _edit_images(ctx: Ctx, prefix: str, change: Callable[[dict[str, Any]], object]) -> list[Entry]:
    """Every checkpoint/<prefix>*.img decoded, `change`d (its first entry) and encoded again."""
    import pycriu  # the system's CRIU python bindings

    out = ctx.base
    for name in [n.removeprefix("checkpoint/") for n in ctx.names() if n.startswith(f"checkpoint/{prefix}")]:
        img = pycriu.images.load(io.BytesIO(ctx.image(name)))
        change(img)
        data = io.BytesIO()
        pycriu.images.dump(img, data)
        out = Ctx(out, ctx.sentinel).replaced(f"checkpoint/{name}", data.getvalue())
    return out


RLIMIT_MEMLOCK = 8
UNLIMITED = (1 << 64) - 1


def _raise_memlock(img: dict[str, Any]) -> None:
    limits = img["entries"][0]["tc"]["rlimits"]["rlimits"]
    limits[RLIMIT_MEMLOCK] = {"cur": UNLIMITED, "max": UNLIMITED}


def raised_rlimits(ctx: Ctx) -> list[Entry]:
    """core-*.img: RLIMIT_MEMLOCK unlimited (CRIU restores as root, so it can raise a hard limit)."""
    return _edit_images(ctx, "core-", _raise_memlock)


def _mount_host_disk(img: dict[str, Any]) -> None:
    bind = next(e for e in img["entries"] if e.get("ext_key") and e["mountpoint"] != "/")
    bind.pop("ext_key")  # CRIU then mounts the image's own source, not the one amber passes
    bind.update(fstype=16, fsname="ext4", source="/dev/vda", root="/")


def host_disk_mount(ctx: Ctx) -> list[Entry]:
    """mountpoints-*.img: a bind amber provides turned into the host's disk mounted from /dev/vda."""
    return _edit_images(ctx, "mountpoints-", _mount_host_disk)


def _privileged(spec: dict[str, Any]) -> None:
    proc, linux = spec["process"], spec["linux"]
    proc["capabilities"] = {k: ALL_CAPS for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    proc["noNewPrivileges"] = False
    linux.pop("seccomp", None)
    linux["resources"] = {"devices": [{"allow": True, "access": "rwm"}]}
    linux["maskedPaths"], linux["readonlyPaths"] = [], []


def privileged_spec(ctx: Ctx) -> list[Entry]:
    """spec.dump: every capability, no_new_privs off, no seccomp, all devices, nothing masked."""
    return ctx.with_json("spec.dump", _privileged)


def overlay_host_dirs(ctx: Ctx) -> list[Entry]:
    """spec.dump: an overlay whose lower layers are the host's /etc and /bin."""
    mount = {"destination": "/mnt", "type": "overlay", "source": "overlay", "options": ["lowerdir=/etc:/bin"]}
    return ctx.with_json("spec.dump", lambda s: s["mounts"].append(mount))


def no_pid_namespace(ctx: Ctx) -> list[Entry]:
    """spec.dump without a pid namespace: the container would see (and kill) the host's processes."""

    def change(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns.get("type") != "pid"]

    return ctx.with_json("spec.dump", change)


CONFINED = frozenset({ExitCode.OK, *AMBER_CODES})  # a confined, harmless change may restore fine

CASES: list[Case] = [
    # hostile members
    Case("dotdot-member", _plain(_dotdot)),
    Case("dotdot-member-zstd", _zst(_dotdot), ext=".tar.zst"),
    Case("dotdot-short", _plain(_dotdot_short)),
    Case("absolute-member", _plain(_absolute)),
    Case("absolute-member-zstd", _zst(_absolute), ext=".tar.zst"),
    Case("symlink-then-write", _plain(_symlink_write)),
    Case("symlink-then-write-zstd", _zst(_symlink_write), ext=".tar.zst"),
    Case("symlink-relative-out", _plain(_symlink_relative_out)),
    Case("symlink-as-checkpoint-dir", _plain(_symlink_dir_then_member)),
    Case("hardlink-etc-passwd", _plain(_hardlink_passwd)),
    Case("hardlink-sentinel", _plain(_hardlink_sentinel)),
    Case("hardlink-via-symlink", _plain(_hardlink_via_symlink)),
    Case("char-device", _plain(_chardev)),
    Case("block-device", _plain(_blockdev)),
    Case("fifo", _plain(_fifo)),
    Case("duplicate-config-dump", _plain(_duplicate_config)),
    Case("duplicate-config-dump-zstd", _zst(_duplicate_config), ext=".tar.zst"),
    Case("duplicate-image", _plain(_duplicate_image)),
    Case("nul-in-name", _plain(_nul_name)),
    Case("name-5000-bytes", _plain(_long_name)),
    Case("name-4200-bytes-deep", _plain(_deep_name)),
    # rootfs diff and deleted.files
    Case("diff-symlink-then-write", _plain(_diff_symlink_write)),
    Case("diff-rooted-symlink-then-write", _plain(_diff_rooted_symlink_write)),
    Case("diff-dotdot", _plain(_diff_dotdot)),
    Case("diff-dotdot-short", _plain(_diff_dotdot_short)),
    Case("diff-absolute", _plain(_diff_absolute)),
    Case("diff-hardlink-out", _plain(_diff_hardlink_out)),
    Case("diff-sparse-1pib", _plain(_diff_sparse_1pib)),
    Case("diff-sparse-map-lies", _plain(_diff_sparse_map_lies)),
    Case("diff-sparse-map-endless", _plain(_diff_sparse_map_endless)),
    Case("diff-sparse-honest", _plain(_diff_sparse_honest), CONFINED, may_restore=True),
    Case("diff-not-a-tar", _plain(_diff_not_a_tar)),
    Case("diff-streamed-symlink-then-write", _zst_streamed(_diff_symlink_write), ext=".tar.zst"),
    Case("diff-streamed-dotdot", _zst_streamed(_diff_dotdot), ext=".tar.zst"),
    Case("diff-streamed-absolute", _zst_streamed(_diff_absolute), ext=".tar.zst"),
    Case("diff-streamed-hardlink-out", _zst_streamed(_diff_hardlink_out), ext=".tar.zst"),
    Case("diff-streamed-not-a-tar", _zst_streamed(_diff_not_a_tar), ext=".tar.zst"),
    Case("deleted-dotdot", _plain(_deleted_dotdot)),
    Case("deleted-streamed-dotdot", _zst_streamed(_deleted_dotdot), ext=".tar.zst"),
    Case("deleted-dotdot-dir", _plain(_deleted_dotdot_dir)),
    Case("deleted-through-symlink", _plain(_deleted_through_symlink), CONFINED, may_restore=True),
    Case("deleted-through-relative-symlink", _plain(_deleted_through_relative_symlink), CONFINED, may_restore=True),
    Case("deleted-root", _plain(_deleted_root)),
    Case("deleted-not-a-list", _plain(_deleted_not_a_list)),
    Case("deleted-nul", _plain(_deleted_nul)),
    # bombs
    Case("bomb-config-100mb", _bomb_config, ext=".tar.zst"),
    Case("bomb-trailing-garbage", _bomb_trailing, ext=".tar.zst"),
    Case("bomb-member-1pib", _bomb_huge_member, ext=".tar.zst"),
    Case("bomb-deleted-files-20mb", _zst(_bomb_big_deleted_files), ext=".tar.zst"),
    Case("bomb-manifest-lies-300mb", _bomb_manifest_lies, ext=".tar.zst"),
    # malformed streams
    Case("truncated", _truncated),
    Case("truncated-zstd", _truncated_zstd, ext=".tar.zst"),
    Case("truncated-in-head", _truncated_in_head),
    Case("wrong-magic", _wrong_magic),
    Case("zstd-magic-garbage", _zstd_magic_garbage, ext=".tar.zst"),
    Case("gzip-magic-garbage", _gzip_magic_garbage, ext=".tar.gz"),
    Case("empty", _empty),
    Case("header-only", _ustar_header_only),
    # malformed metadata
    Case("config-not-json", _plain(_config_not_json)),
    Case("config-json-list", _plain(_config_list)),
    Case("config-binary", _plain(_config_binary)),
    Case("config-is-dir", _plain(_config_dir)),
    Case("config-is-symlink", _plain(_config_symlink)),
    Case("config-missing", _plain(_no_config)),
    Case("spec-json-list", _plain(_spec_list)),
    Case("config-runtime-int", _plain(_config(lambda c: c.update(runtime=5))), AMBER_CODES),
    Case("config-runtime-list", _plain(_config(lambda c: c.update(runtime=["crun"]))), AMBER_CODES),
    Case("config-name-list", _plain(_config(lambda c: c.update(name=["x"]))), AMBER_CODES),
    Case("config-name-slashes", _plain(_config(lambda c: c.update(name="../../etc"))), AMBER_CODES),
    Case(
        "config-image-dict",
        _plain(_config(lambda c: c.update(rootfsImageName={"a": 1}, rootfsImageID=[1]))),
        AMBER_CODES,
    ),
    Case("spec-mounts-int", _plain(_spec(lambda s: s.update(mounts=5))), AMBER_CODES),
    Case("spec-root-string", _plain(_spec(lambda s: s.update(root="/"))), AMBER_CODES),
    Case("spec-linux-list", _plain(_spec(lambda s: s.update(linux=[]))), AMBER_CODES),
    Case("spec-devshm-no-source", _plain(_devshm_no_source), AMBER_CODES, may_restore=True),
    Case("manifest-bad-sizes", _plain(_manifest_bad_sizes), CONFINED, may_restore=True),
    # missing or damaged CRIU images
    Case("no-inventory", _plain(_no_inventory)),
    Case("corrupt-pstree", _plain(_corrupt_pstree), AMBER_CODES),
    Case("garbage-pstree", _plain(_garbage_pstree), AMBER_CODES),
    Case("corrupt-inventory", _plain(_corrupt_inventory), AMBER_CODES),
    Case("truncated-pages", _plain(_truncated_pages), AMBER_CODES),
    # security findings
    Case("runtime-is-host-path", _plain(_runtime_path), AMBER_CODES),
    Case("devshm-bind-to-host", _plain(_devshm_bind), AMBER_CODES, may_restore=True),
    Case("cwd-climbs-out", _plain(_cwd_climbs), AMBER_CODES, may_restore=True),
    # privileges beyond amber's
    Case("forged-credentials", _plain(forged_credentials)),
    Case("raised-rlimits", _plain(raised_rlimits)),
    Case("host-disk-mount", _plain(host_disk_mount)),
    Case("privileged-spec", _plain(privileged_spec)),
    Case("overlay-host-dirs", _plain(overlay_host_dirs)),
    Case("no-pid-namespace", _plain(no_pid_namespace)),
]

CASE_NAMES = [c.name for c in CASES]
BY_NAME = {c.name: c for c in CASES}


def build_corpus(base: Path, out_dir: Path, sentinel: Path) -> dict[str, Path]:
    """Write every case of CASES into `out_dir`; returns name -> archive path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(read_entries(base), sentinel)
    paths = {}
    for case in CASES:
        path = out_dir / f"{case.name}{case.ext}"
        path.write_bytes(case.build(ctx))
        paths[case.name] = path
    return paths


# ====================================== image tarballs ========================================
def image_corpus(out_dir: Path, sentinel: Path) -> dict[str, Path]:
    """Hostile rootfs tarballs for `amber image import` (plain and zstd)."""
    rel = str(sentinel).lstrip("/")
    ok = [directory("etc"), file("etc/hostname", b"x\n")]
    cases: dict[str, list[Entry]] = {
        "symlink-then-write": [*ok, symlink("etc/x", "/"), file(f"etc/x/{rel}/pwned")],
        "rooted-symlink-then-write": [*ok, symlink("evil", str(sentinel)), file("evil/pwned")],
        "relative-symlink-then-write": [*ok, symlink("up", "../../../../../../../../.."), file(f"up/{rel}/pwned")],
        "dotdot": [*ok, file(f"{CLIMB}{rel}/pwned")],
        "dotdot-short": [*ok, file("../../pwned")],
        "absolute": [*ok, file(f"{sentinel}/pwned")],
        "hardlink-out": [*ok, hardlink("etc/victim", f"{sentinel}/{VICTIM_FILE}")],
        "nul-name": [*ok, nul_named("etc/a\0b")],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, entries in cases.items():
        data = tar_bytes(entries)
        paths[name] = out_dir / f"{name}.tar"
        paths[name].write_bytes(data)
        paths[f"{name}-zstd"] = out_dir / f"{name}.tar.zst"
        paths[f"{name}-zstd"].write_bytes(zstd(data))
    return paths


IMAGE_CASES = [
    f"{n}{s}"
    for n in (
        "symlink-then-write",
        "rooted-symlink-then-write",
        "relative-symlink-then-write",
        "dotdot",
        "dotdot-short",
        "absolute",
        "hardlink-out",
        "nul-name",
    )
    for s in ("", "-zstd")
]
