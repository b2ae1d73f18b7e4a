"""Hostile checkpoint archives and image tarballs on the real stack: refused cleanly, nothing
written outside amber's directories, nothing left behind.

One real archive is made per module (a running counter, checkpointed to a plain tar, removed);
tests/hostile_corpus.py rewrites it into one archive per hostile case. Every escape in the corpus
aims at a sentinel directory, snapshotted before and after each command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import runtime as runtimes
from amber.adapters.checkpoint_archive import read_head
from amber.engine.demo_image import build_rootfs_tar
from tests import hostile_corpus as hc
from tests.conftest import Amber, have_stack, mounts_under
from tests.integration.streams import piped_stdin
from tests.integration.test_checkpoint import start_counter

pytestmark = pytest.mark.root

DEMO = "localhost/demo:latest"
# Names a hostile member uses for what it writes: none may appear anywhere in the test's tree.
PLANTED = {"escape", "pwned", "absolute", "pwned-by-devshm", hc.RAN_MARKER}
TIME_LIMIT = 20.0  # seconds for one command on one archive, bombs included


@dataclasses.dataclass
class World:
    amber: Amber
    top: Path
    sentinel: Path
    corpus: dict[str, Path]
    images: dict[str, Path]
    passwd: os.stat_result

    def reset(self) -> None:
        """A fresh sentinel, and no container left over from an earlier case."""
        engine = self.amber.fresh_engine()
        for c in engine.containers.store.all():
            with contextlib.suppress(Exception):
                engine.containers.remove(c.id, force=True)
        for path in [k for k in runtimes._cache if k.startswith(str(self.sentinel))]:
            del runtimes._cache[path]  # amber caches what `RUNTIME --version` said: ask again
        if self.sentinel.exists():
            shutil.rmtree(self.sentinel)
        hc.make_sentinel(self.sentinel)

    def outside(self) -> dict[str, tuple[Any, ...]]:
        """Everything under the test's tree but amber's own roots (the sentinel included)."""
        return hc.snapshot(self.top, skip=[self.amber.root, self.amber.runroot])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not have_stack():
        pytest.skip("needs root and runc, crun, CRIU, conmon")
    top = tmp_path_factory.mktemp("hostile")
    amber = Amber(top / "root", top / "run")
    try:
        amber.engine.images.import_image(build_rootfs_tar(top / "rootfs.tar"), DEMO)
        start_counter(amber, DEMO, "crun")
        base = top / "base.tar"
        assert amber("checkpoint", "-e", str(base), "--compress", "none", "cnt") == 0
        assert amber("rm", "cnt") == 0
        sentinel = hc.make_sentinel(top / "sentinel")
        corpus = hc.build_corpus(base, top / "corpus", sentinel)
        images = hc.image_corpus(top / "images", sentinel)
        yield World(amber, top, sentinel, corpus, images, os.stat("/etc/passwd"))
    finally:
        amber.cleanup()
        _remove_cgroups(top / "base.tar")


def _remove_cgroups(base: Path) -> None:
    """The (empty) cgroups a failed restore leaves behind (see test_failed_restore_leaves_no_cgroup)."""
    with contextlib.suppress(Exception):
        cid = str(read_head(base).config["id"])
        for d in Path("/sys/fs/cgroup").glob(f"*/amber/amber-*{cid}"):
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.fixture
def w(world: World) -> Iterator[World]:
    world.reset()
    yield world
    world.reset()


def _params(field: str) -> list[Any]:
    out = []
    for case in hc.CASES:
        bug = getattr(case, field)
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(case.name, marks=marks, id=case.name))
    return out


def assert_clean_error(rc: int, err: str, allowed: frozenset[int], what: str, *, table_rc: int | None = None) -> None:
    """`table_rc`: an exit code a command gives with a report instead of an error (`archive check`)."""
    assert "Traceback" not in err, f"{what}: a traceback\n{err}"
    assert "internal error" not in err, f"{what}: not an AmberError\n{err}"
    assert rc in allowed, f"{what}: exit code {rc}, expected one of {sorted(allowed)}\n{err}"
    if rc not in (0, table_rc):
        assert "error:" in err and "hint:" in err, f"{what}: no error/hint lines\n{err}"


def assert_nothing_outside(w: World, before: dict[str, tuple[Any, ...]], what: str) -> None:
    after = w.outside()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{what} changed files outside amber's directories: {changed[:20]}"
    st = os.stat("/etc/passwd")
    assert (st.st_ino, st.st_nlink, st.st_mode) == (w.passwd.st_ino, w.passwd.st_nlink, w.passwd.st_mode)
    planted = [os.path.join(d, n) for d, ds, fs in os.walk(w.top) for n in [*ds, *fs] if n in PLANTED]
    # Inside a container's own bundle (its /dev/shm, say) the archive's content is where it belongs.
    planted = [p for p in planted if "/userdata/restore-mounts/" not in p]
    assert not planted, f"{what} planted {planted}"
    assert not any(Path("/", n).exists() for n in PLANTED), f"{what} wrote at /"


def assert_no_state(w: World, what: str) -> None:
    engine = w.amber.fresh_engine()
    assert engine.containers.list(all_containers=True) == [], f"{what} left a container record"
    assert mounts_under(w.amber.root) == [] and mounts_under(w.amber.runroot) == [], f"{what} left mounts"
    cdir = w.amber.root / "containers"
    assert not cdir.exists() or os.listdir(cdir) == [], f"{what} left {os.listdir(cdir)}"


# ====================================== restore ===============================================
@pytest.mark.parametrize("name", _params("bug"))
def test_restore_refuses_hostile_archive(w: World, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    case = hc.BY_NAME[name]
    path = w.corpus[name]
    before = w.outside()
    capfd.readouterr()
    started = time.monotonic()
    rc = w.amber("restore", "-i", str(path))
    elapsed = time.monotonic() - started
    err = capfd.readouterr().err
    what = f"restore of {name}"
    assert_nothing_outside(w, before, what)
    allowed = case.codes | ({0} if case.may_restore else set())
    assert rc != 0 or case.may_restore, f"{what} succeeded\n{err}"
    assert_clean_error(rc, err, frozenset(allowed), what)
    if name.startswith("diff-streamed-"):  # refused while the diff was unpacked onto the root
        assert "(its rootfs-diff.tar)" in err, f"{what}: not refused on the streamed path\n{err}"
    assert elapsed < TIME_LIMIT, f"{what} took {elapsed:.1f} s"
    if rc == 0:  # a confined, harmless archive that restored: the container is an ordinary one
        assert w.amber("rm", "-f", "cnt") == 0
    assert_no_state(w, what)


@pytest.mark.parametrize("name", _params("bug"))
def test_stdin_refuses_as_a_file_does(
    w: World, name: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same archive through `restore --import -` (a pipe): the same exit code, nothing outside."""
    path = w.corpus[name]
    rc_file = w.amber("restore", "-i", str(path))
    w.reset()
    before = w.outside()
    capfd.readouterr()
    with piped_stdin(monkeypatch, path):
        rc = w.amber("restore", "-i", "-")
    err = capfd.readouterr().err
    what = f"restore of {name} from stdin"
    assert_nothing_outside(w, before, what)
    assert rc == rc_file, f"{what}: exit code {rc}, from the file {rc_file}\n{err}"
    assert_clean_error(rc, err, frozenset({rc_file}), what)
    if rc == 0:
        assert w.amber("rm", "-f", "cnt") == 0
    assert_no_state(w, what)


# ====================================== inspect / show ========================================
@pytest.mark.parametrize("name", _params("inspect_bug"))
def test_inspect_and_show_hostile_archive(w: World, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    path = w.corpus[name]
    for argv in (
        ("archive", "inspect", str(path), "--all"),
        ("archive", "show", str(path)),
        ("archive", "inspect", str(path), "--ps-tree-cmd", "--ps-tree-env"),
        ("archive", "memparse", str(path)),
        ("archive", "check", str(path)),
    ):
        what = " ".join(argv[:2]) + f" of {name}"
        before = w.outside()
        capfd.readouterr()
        started = time.monotonic()
        rc = w.amber(*argv)
        elapsed = time.monotonic() - started
        err = capfd.readouterr().err
        assert_nothing_outside(w, before, what)
        assert_clean_error(rc, err, hc.CONFINED, what, table_rc=1 if argv[1] == "check" else None)
        assert elapsed < TIME_LIMIT, f"{what} took {elapsed:.1f} s"
        tmp = w.amber.fresh_engine().layout.tmp
        assert not tmp.exists() or os.listdir(tmp) == [], f"{what} left {os.listdir(tmp)}"
    assert_no_state(w, f"inspect of {name}")


def test_the_base_archive_restores(w: World) -> None:
    """The corpus is built around a valid archive: the base restores, so each refusal is the
    hostile change's doing."""
    base = w.top / "base.tar"
    assert w.amber("restore", "-i", str(base), "--name", "base") == 0  # --name: a new id, a new cgroup
    assert w.amber("rm", "-f", "base") == 0


def test_failed_restore_leaves_no_cgroup(w: World, capfd: pytest.CaptureFixture[str]) -> None:
    """The base archive after a damaged copy of it (same container id) failed inside CRIU."""
    assert w.amber("restore", "-i", str(w.corpus["corrupt-pstree"])) != 0
    assert_no_state(w, "restore of corrupt-pstree")
    cid = str(read_head(w.top / "base.tar").config["id"])
    assert list(Path("/sys/fs/cgroup").glob(f"*/amber/amber-*{cid}")) == []
    capfd.readouterr()
    assert w.amber("restore", "-i", str(w.top / "base.tar")) == 0, capfd.readouterr().err
    assert w.amber("rm", "-f", "cnt") == 0


# ====================================== image import ==========================================
@pytest.mark.parametrize("name", hc.IMAGE_CASES)
def test_image_import_refuses_hostile_tarball(w: World, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    before = w.outside()
    capfd.readouterr()
    rc = w.amber("image", "import", str(w.images[name]), "localhost/x:1")
    err = capfd.readouterr().err
    what = f"image import of {name}"
    assert_nothing_outside(w, before, what)
    assert rc != 0, f"{what} succeeded"
    assert_clean_error(rc, err, hc.BAD, what)
    engine = w.amber.fresh_engine()
    assert [i.name for i in engine.images.list() if "localhost/x" in i.name] == []
    assert mounts_under(w.amber.root) == []
