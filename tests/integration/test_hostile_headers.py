"""Hostile tar headers on the real stack: a PAX size=-4096 or size=10**30, or any malformed numeric
field, is refused at once by every command that reads an archive or an image (exit 6, an error:
and a hint: line naming the member), never a spin, a traceback or a half-made container.

One real checkpoint (plain tar) is made per module; each hostile member is spliced in front of
it (so even `archive show`, which reads only the head, meets it) and after its head (so restore
passes its early checks and meets it while extracting).
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from amber.engine.demo_image import build_rootfs_tar
from tests.conftest import Amber, have_stack, mounts_under
from tests.integration.test_checkpoint import start_counter
from tests.unit.adapters.tar.helpers import HOSTILE_HEADERS

pytestmark = pytest.mark.root

DEMO = "localhost/demo:latest"
TIME_LIMIT = 20.0
CASES = sorted(HOSTILE_HEADERS)


@dataclass
class World:
    amber: Amber
    top: Path
    base: bytes
    head_end: int  # offset just after the archive's config.dump and spec.dump
    rootfs: bytes
    rootfs_end: int  # offset just after the rootfs tarball's last member


def _end_of(path: Path, member: str | None = None) -> int:
    """The offset just after `member` (None: after the last member, before the end marker)."""
    end = 0
    with tarfile.open(path, "r:") as tar:
        for ti in tar:
            end = ti.offset_data + -(-ti.size // 512) * 512
            if ti.name == member:
                return end
    assert member is None, f"{path} has no {member}"
    return end


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not have_stack():
        pytest.skip("needs root and runc, crun, CRIU, conmon")
    top = tmp_path_factory.mktemp("headers")
    amber = Amber(top / "root", top / "run")
    try:
        rootfs = build_rootfs_tar(top / "rootfs.tar")
        amber.engine.images.import_image(rootfs, DEMO)
        start_counter(amber, DEMO, "crun")
        base = top / "base.tar"
        assert amber("checkpoint", "-e", str(base), "--compress", "none", "cnt") == 0
        assert amber("rm", "cnt") == 0
        yield World(amber, top, base.read_bytes(), _end_of(base, "spec.dump"), rootfs.read_bytes(), _end_of(rootfs))
    finally:
        amber.cleanup()


def _write(w: World, name: str, data: bytes, *, zstd: bool = False) -> Path:
    path = w.top / "cases" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zstd else data)
    return path


def _run(w: World, capfd: pytest.CaptureFixture[str], *argv: str) -> None:
    what = " ".join(argv[:3])
    capfd.readouterr()
    started = time.monotonic()
    rc = w.amber(*argv)
    elapsed = time.monotonic() - started
    err = capfd.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, f"{what}\n{err}"
    assert rc == 6, f"{what}: exit code {rc}, expected 6\n{err}"
    assert "error:" in err and "hint:" in err, f"{what}: no error/hint lines\n{err}"
    assert "'x'" in err or "PaxHeader" in err, f"{what}: the member is not named\n{err}"
    assert elapsed < TIME_LIMIT, f"{what} took {elapsed:.1f} s"


def _no_state(w: World) -> None:
    engine = w.amber.fresh_engine()
    assert engine.containers.list(all_containers=True) == []
    assert mounts_under(w.amber.root) == [] and mounts_under(w.amber.runroot) == []
    tmp = engine.layout.tmp
    assert not tmp.exists() or os.listdir(tmp) == [], os.listdir(tmp)


@pytest.mark.parametrize("case", CASES)
def test_restore_refuses(world: World, case: str, capfd: pytest.CaptureFixture[str]) -> None:
    w, bad = world, HOSTILE_HEADERS[case]
    first = _write(w, f"{case}-first.tar", bad + w.base)
    middle = _write(w, f"{case}-middle.tar", w.base[: w.head_end] + bad + w.base[w.head_end :])
    zstd = _write(w, f"{case}-middle.tar.zst", w.base[: w.head_end] + bad + w.base[w.head_end :], zstd=True)
    for path in (first, middle, zstd):
        _run(w, capfd, "restore", "-i", str(path))
        _no_state(w)


@pytest.mark.parametrize("case", CASES)
def test_archive_commands_refuse(world: World, case: str, capfd: pytest.CaptureFixture[str]) -> None:
    w = world
    path = _write(w, f"{case}-first.tar", HOSTILE_HEADERS[case] + w.base)
    for argv in (
        ("archive", "show", str(path)),
        ("archive", "inspect", str(path), "--all"),
        ("archive", "check", str(path)),
        ("archive", "memparse", str(path)),
    ):
        _run(w, capfd, *argv)
    _no_state(w)


@pytest.mark.parametrize("case", CASES)
def test_image_import_refuses(world: World, case: str, capfd: pytest.CaptureFixture[str]) -> None:
    w, bad = world, HOSTILE_HEADERS[case]
    plain = _write(w, f"{case}-rootfs.tar", bad + w.rootfs)
    late = _write(w, f"{case}-rootfs-late.tar.zst", w.rootfs[: w.rootfs_end] + bad + b"\0" * 1024, zstd=True)
    for path in (plain, late):
        _run(w, capfd, "image", "import", str(path), "localhost/x:1")
    engine = w.amber.fresh_engine()
    assert [i.name for i in engine.images.list() if "localhost/x" in i.name] == []
    _no_state(w)
