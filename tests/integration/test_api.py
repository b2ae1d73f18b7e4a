"""The library API on the real stack: the five lines of docs/api.md, as written, under both
runtimes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import amber
from tests.conftest import Amber

pytestmark = pytest.mark.root


@pytest.fixture
def roots(tmp_path: Path, demo_rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """ROOT and RUNROOT in tmp_path, which is also the working directory (the lines use relative
    paths), with the busybox rootfs tarball in it."""
    shutil.copyfile(demo_rootfs, tmp_path / "busybox-rootfs.tar")
    monkeypatch.chdir(tmp_path)
    root, runroot = tmp_path / "root", tmp_path / "run"
    made = Amber(root, runroot)  # its default network on the session's subnet (tests/subnets.py)
    yield root, runroot
    made.cleanup()


def test_the_five_lines(roots: tuple[Path, Path], runtime: str) -> None:
    ROOT, RUNROOT = roots  # noqa: N806 - the names docs/api.md uses

    eng = amber.Engine(root=ROOT, runroot=RUNROOT)
    eng.import_image("busybox-rootfs.tar", "localhost/busybox:1")
    eng.run("localhost/busybox:1", ["sh", "-c", "sleep 1000"], name="web", detach=True, runtime=runtime)
    eng.checkpoint("web", export="web.tar.zst")
    c = eng.restore_archive("web.tar.zst", name="web2")

    assert isinstance(c, amber.Container)
    assert (c.name, c.status, c.runtime) == ("web2", amber.Status.RUNNING, runtime)
    assert eng.container("web2").status == amber.Status.RUNNING and eng.container("web2").pid > 0
    assert Path("web.tar.zst").is_file()
    assert {x.name: x.status for x in eng.containers()} == {
        "web": amber.Status.CHECKPOINTED,
        "web2": amber.Status.RUNNING,
    }
    assert [x.name for x in eng.containers(running_only=True)] == ["web2"]
    summary = eng.inspect_archive("web.tar.zst").summary
    assert (summary.container, summary.runtime) == ("web", runtime)

    [report] = eng.checkpoint("web2")  # kept in amber's state: restore brings it back
    assert report.name == "web2" and report.export is None
    assert eng.container("web2").status == amber.Status.CHECKPOINTED
    assert eng.restore("web2").status == amber.Status.RUNNING
    for name in ("web", "web2"):
        eng.remove(name, force=True)
    assert eng.containers() == []
    with pytest.raises(amber.NotFoundError):
        eng.container("web")


def test_forced_image_removal_takes_its_containers(roots: tuple[Path, Path]) -> None:
    eng = amber.Engine(*roots)
    image = eng.import_image(Path("busybox-rootfs.tar"), "localhost/busybox:1")
    eng.run("localhost/busybox:1", ["sleep", "1000"], name="user", detach=True)
    with pytest.raises(amber.ConflictError, match="in use by container"):
        eng.remove_image("localhost/busybox:1")
    removal = eng.remove_image("localhost/busybox:1", force=True)
    assert removal.deleted and removal.containers == ["user"] and removal.untagged == ["localhost/busybox:1"]
    assert removal.image.id == image.id and eng.containers() == [] and eng.images() == []


def test_demo_reports_typed_steps(roots: tuple[Path, Path]) -> None:
    from amber.engine import demo

    events = list(amber.Engine(*roots).demo(runtime="crun"))
    kinds = [type(e) for e in events if not isinstance(e, demo.Step)]
    assert kinds == [demo.ImageBuilt, demo.Started, demo.Checkpointed, demo.Restored, demo.Finished]
    checkpointed = next(e for e in events if isinstance(e, demo.Checkpointed))
    assert checkpointed.status == amber.Status.CHECKPOINTED and checkpointed.summary.runtime == "crun"
    restored = next(e for e in events if isinstance(e, demo.Restored))
    assert restored.counter_after > restored.counter_before == checkpointed.counter
