"""Checkpoint archives: podman's real archives, write/read round trips, early stop, damaged input."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from amber.adapters import checkpoint_archive as ca
from amber.adapters.run import run
from amber.adapters.tar.writer import TarWriter
from amber.errors import ArchiveError, NotFoundError, UsageError

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "podman-5.4.2"
PODMAN = {"counter-crun.tar.zst": ("crun", ca.Compression.ZSTD), "counter-runc.tar": ("runc", ca.Compression.NONE)}

CONFIG = {
    "id": "0123456789ab" * 5 + "0123",
    "name": "c1",
    "rootfsImageName": "localhost/busybox:fixture",
    "rootfsImageID": "ab" * 32,
    "runtime": "crun",
    "createdTime": "2025-01-01T00:00:00Z",
}
SPEC = {
    "ociVersion": "1.0.0",
    "annotations": {"io.container.manager": "libpod"},
    "mounts": [],
    "process": {"args": ["sh"]},
    "root": {"path": "/x"},
}


def head(manifest: dict[str, object] | None = None) -> dict[str, bytes]:
    return {
        ca.AMBER_MANIFEST: json.dumps(manifest or {"schema_version": 1}).encode(),
        ca.CONFIG_DUMP: json.dumps(CONFIG).encode(),
        ca.SPEC_DUMP: json.dumps(SPEC).encode(),
    }


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    (b / "checkpoint" / "sub").mkdir(parents=True)
    (b / "checkpoint" / "inventory.img").write_bytes(b"inv")
    (b / "checkpoint" / "pages-1.img").write_bytes(os.urandom(3 << 20))
    (b / "checkpoint" / "core-1.img").write_bytes(b"core")
    (b / "checkpoint" / "sub" / "x").write_bytes(b"x")
    (b / "stats-dump").write_bytes(b"stats")
    (b / "ctr.log").write_bytes(b"log\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(b / "checkpoint" / "s.sock"))
    sock.close()
    return b


MEMBERS = ["ctr.log", "network.status", "stats-dump", "checkpoint"]  # network.status is missing


@pytest.mark.parametrize("name", sorted(PODMAN))
def test_read_head_podman_fixtures(name: str) -> None:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    h = ca.read_head(path)
    runtime, comp = PODMAN[name]
    assert h.config["runtime"] == runtime
    assert h.spec["annotations"]["io.container.manager"] == "libpod"
    assert h.compression is comp and h.manifest is None
    names = [m.name for m in ca.list_members(path)]
    assert names[:4] == ["artifacts", "devshm-checkpoint.tar", "config.dump", "spec.dump"]
    assert ca.INVENTORY in names


@pytest.mark.root  # extracts with the archive's owners (chown)
@pytest.mark.parametrize("name", sorted(PODMAN))
def test_extract_podman_fixtures(name: str, tmp_path: Path) -> None:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    skip = {ca.CONFIG_DUMP, ca.SPEC_DUMP}
    written = ca.extract_archive(path, tmp_path / "b", skip=lambda n: n in skip)
    assert (tmp_path / "b" / ca.INVENTORY).is_file() and (tmp_path / "b" / ca.ROOTFS_DIFF).is_file()
    assert not (tmp_path / "b" / ca.CONFIG_DUMP).exists() and ca.CONFIG_DUMP not in written
    got = ca.extract_members(path, tmp_path / "sel", lambda n: n.startswith("checkpoint/pages-"))
    assert got == ["checkpoint/pages-1.img", "checkpoint/pages-2.img"]


@pytest.mark.parametrize("comp", ["none", "gzip", "zstd"])
def test_round_trip(comp: str, bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    compression = ca.Compression.parse(comp.upper())
    size = ca.write_archive(dest, bundle, MEMBERS, compression, head=head({"schema_version": 1}))
    assert size == dest.stat().st_size
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert ca.detect_compression(dest) is compression
    assert [p.name for p in tmp_path.iterdir()] == ["bundle", "out.tar"]  # no temp file left

    h = ca.read_head(dest)
    assert (h.config, h.spec, h.manifest) == (CONFIG, SPEC, {"schema_version": 1})

    members = ca.list_members(dest)
    assert [m.name for m in members] == [
        "amber.manifest",
        "config.dump",
        "spec.dump",
        "ctr.log",
        "stats-dump",
        "checkpoint",
        "checkpoint/core-1.img",
        "checkpoint/inventory.img",
        "checkpoint/pages-1.img",
        "checkpoint/sub",
        "checkpoint/sub/x",
    ]  # socket skipped, directories first then sorted
    assert members[5].type is ca.MemberType.DIR
    assert all(m.mode == 0o600 for m in members[:3])
    with ca._open(dest, buffered=True) as (_c, _r, stream):
        data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:  # tarfile strips the "/": read headers
        raw_names = [data[ti.offset : ti.offset + 100].rstrip(b"\0").decode() for ti in tar]
    assert raw_names[5] == "checkpoint/" and raw_names[9] == "checkpoint/sub/"
    assert not any(n.startswith(("./", "/")) for n in raw_names)

    out = tmp_path / "restored"
    written = ca.extract_archive(dest, out, skip=lambda n: n in {ca.CONFIG_DUMP, ca.SPEC_DUMP})
    assert ca.INVENTORY in written
    for rel in ("checkpoint/pages-1.img", "checkpoint/sub/x", "ctr.log", "stats-dump"):
        assert (out / rel).read_bytes() == (bundle / rel).read_bytes()


def test_write_is_atomic(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out" / "a.tar.zst"
    dest.parent.mkdir()
    real = TarWriter.add_tree
    calls = []

    def boom(self: TarWriter, path: str, arcname: str) -> None:
        calls.append(arcname)
        if arcname == "checkpoint":
            raise OSError(5, "disk on fire")
        real(self, path, arcname)

    monkeypatch.setattr(TarWriter, "add_tree", boom)
    with pytest.raises(OSError, match="disk on fire"):
        ca.write_archive(dest, bundle, MEMBERS, ca.Compression.ZSTD, head=head())
    assert calls and list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("comp", ["none", "gzip", "zstd"])
def test_read_head_stops_early(comp: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    (b / "checkpoint").mkdir(parents=True)
    with open(b / "checkpoint" / "pages-1.img", "wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))
    dest = tmp_path / "big.tar"
    ca.write_archive(dest, b, ["checkpoint"], ca.Compression(comp), head=head())
    assert dest.stat().st_size > 50 << 20
    h = ca.read_head(dest)
    assert h.config == CONFIG and h.manifest is not None
    assert h.bytes_read < 1 << 20


def test_compression_parse() -> None:
    assert ca.Compression.parse("Gzip") is ca.Compression.GZIP
    for bad in ("x", "bzip2", ""):
        with pytest.raises(UsageError) as exc:
            ca.Compression.parse(bad)
        assert exc.value.message == (
            f'selected compression algorithm ("{bad}") not supported. Please select one from: gzip, none, zstd'
        )


def _tar_of(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    src = tmp_path / f"src-{name}"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    dest = tmp_path / name
    ca.write_archive(dest, src, sorted(files), ca.Compression.NONE, head={})
    return dest


def test_damaged_archives(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        ca.read_head(tmp_path / "nope.tar")
    with pytest.raises(ArchiveError, match="is a directory"):
        ca.read_head(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ArchiveError, match="is empty"):
        ca.read_head(tmp_path / "empty")
    (tmp_path / "garbage").write_bytes(os.urandom(4096))
    with pytest.raises(ArchiveError, match="not a tar archive"):
        ca.read_head(tmp_path / "garbage")
    (tmp_path / "zgarbage").write_bytes(zstandard.ZstdCompressor().compress(os.urandom(4096)))
    with pytest.raises(ArchiveError, match="not a tar archive"):
        ca.read_head(tmp_path / "zgarbage")
    (tmp_path / "badzstd").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(4096))
    with pytest.raises(ArchiveError, match="corrupt"):
        ca.read_head(tmp_path / "badzstd")

    no_config = _tar_of(tmp_path, "noconfig.tar", {"spec.dump": b"{}"})
    with pytest.raises(ArchiveError, match="lacks config.dump"):
        ca.read_head(no_config)
    bad_json = _tar_of(tmp_path, "badjson.tar", {"config.dump": b"{nope", "spec.dump": b"{}"})
    with pytest.raises(ArchiveError, match="corrupt config.dump: not JSON"):
        ca.read_head(bad_json)
    not_obj = _tar_of(tmp_path, "list.tar", {"config.dump": b"[]", "spec.dump": b"{}"})
    with pytest.raises(ArchiveError, match="a JSON list, not an object"):
        ca.read_head(not_obj)
    no_inventory = _tar_of(
        tmp_path, "noinv.tar", {"config.dump": b"{}", "spec.dump": b"{}", "checkpoint/core-1.img": b"c"}
    )
    with pytest.raises(ArchiveError, match="has no checkpoint/inventory.img"):
        ca.extract_archive(no_inventory, tmp_path / "x")

    good = tmp_path / "good.tar.zst"
    ca.write_archive(good, bundle, MEMBERS, ca.Compression.ZSTD, head=head())
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    ca.read_head(cut)  # the head is intact
    with pytest.raises(ArchiveError, match="truncated"):
        ca.extract_archive(cut, tmp_path / "y")
    with pytest.raises(ArchiveError, match="truncated"):
        ca.list_members(cut)
    plain = tmp_path / "good.tar"
    ca.write_archive(plain, bundle, MEMBERS, ca.Compression.NONE, head=head())
    cut.write_bytes(plain.read_bytes()[:2000])
    with pytest.raises(ArchiveError, match="truncated"):
        ca.read_head(cut)


@pytest.mark.skipif(shutil.which("checkpointctl") is None, reason="checkpointctl is not installed")
def test_checkpointctl_accepts_our_archive(tmp_path: Path) -> None:
    b = tmp_path / "b"
    (b / "checkpoint").mkdir(parents=True)
    (b / "checkpoint" / "inventory.img").write_bytes(b"\0" * 16)
    for comp in ("zstd", "gzip", "none"):
        dest = tmp_path / f"c.{comp}"
        ca.write_archive(dest, b, ["checkpoint"], ca.Compression(comp), head=head())
        out = run(["checkpointctl", "show", str(dest)], timeout=60).stdout
        assert "c1" in out and "crun" in out and "Podman" in out


@pytest.mark.parametrize("comp", [ca.Compression.NONE, ca.Compression.ZSTD])
def test_a_plain_archive_leaves_the_rootfs_diff_in_place(bundle: Path, tmp_path: Path, comp: ca.Compression) -> None:
    """extract_archive's `spans`: a plain archive's rootfs-diff.tar is not written, its Span
    reads exactly its bytes in place; a compressed archive writes it as usual."""
    from amber.adapters import rootfs_diff

    upper = tmp_path / "upper"
    (upper / "data").mkdir(parents=True)
    (upper / "data" / "f").write_bytes(os.urandom(70_000))
    rootfs_diff.create_rootfs_diff(upper, bundle / ca.ROOTFS_DIFF)
    diff_bytes = (bundle / ca.ROOTFS_DIFF).read_bytes()
    archive = tmp_path / f"a.{comp.value}"
    ca.write_archive(archive, bundle, ["checkpoint", ca.ROOTFS_DIFF, "stats-dump"], comp, head=head())
    dest = tmp_path / "x"
    spans: dict[str, ca.Span | None] = {ca.ROOTFS_DIFF: None, "stats-dump-missing": None}
    written = ca.extract_archive(archive, dest, spans=spans)
    assert (dest / "checkpoint" / "pages-1.img").read_bytes() == (bundle / "checkpoint" / "pages-1.img").read_bytes()
    assert spans["stats-dump-missing"] is None
    span = spans[ca.ROOTFS_DIFF]
    if comp is ca.Compression.ZSTD:
        assert span is None and (dest / ca.ROOTFS_DIFF).read_bytes() == diff_bytes
        return
    assert span is not None and ca.ROOTFS_DIFF not in written and not (dest / ca.ROOTFS_DIFF).exists()
    with span.open() as raw:
        assert raw.read() == diff_bytes  # and not one byte past it
    root = tmp_path / "root"
    root.mkdir()
    with span.open() as raw:
        rootfs_diff.apply_rootfs_diff_stream(raw, root, archive="in place")
    assert (root / "data" / "f").read_bytes() == (upper / "data" / "f").read_bytes()
