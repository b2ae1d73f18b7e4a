"""The engine's split: the option rules, recovery by a ContainerService built on its own, and a
checkpoint whose export and revival both fail saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amber.adapters import checkpoint_archive as ca
from amber.adapters import podman_format as fmt
from amber.config import Layout, Settings
from amber.engine import recovery
from amber.engine.checkpoint import CheckpointOptions, CheckpointService
from amber.engine.containers import ContainerService
from amber.engine.images import ImageService
from amber.engine.restore import RestoreOptions
from amber.engine.store import ContainerStore
from amber.errors import AmberError, NotFoundError, UsageError
from amber.models import Container, Status


# ===================================== options ================================================
@pytest.mark.parametrize(
    ("opts", "count", "message"),
    [
        (CheckpointOptions(compression=ca.Compression.GZIP), 1, "--compress can only be used with --export"),
        (CheckpointOptions(ignore_rootfs=True), 1, "--ignore-rootfs can only be used with --export"),
        (CheckpointOptions(), 0, "at least one name or id"),
        (CheckpointOptions(pre_checkpoint=True, with_previous=True), 1, "--with-previous"),
    ],
)
def test_checkpoint_options_validate(opts: CheckpointOptions, count: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        opts.validate(count)


def test_checkpoint_options_valid() -> None:
    CheckpointOptions(export=Path("/x.tar"), compression=ca.Compression.NONE, ignore_rootfs=True).validate(2)
    CheckpointOptions().validate()
    assert CheckpointOptions().archive_compression is ca.Compression.ZSTD


def test_restore_options_validate() -> None:
    with pytest.raises(UsageError, match="--tcp-established cannot be used with --name"):
        RestoreOptions(tcp_established=True, name="x").validate(archive=True)
    for opts in (RestoreOptions(name="x"), RestoreOptions(ignore_rootfs=True)):
        with pytest.raises(UsageError, match="only be used with --import"):
            opts.validate(archive=False)
        opts.validate(archive=True)
    RestoreOptions(tcp_established=True, keep=True).validate(archive=False)


# ===================================== recovery without the Engine ============================
def test_container_service_alone_recovers_an_interrupted_restore(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "run")
    settings = Settings(root=layout.root, runroot=layout.runroot, default_runtime="crun")
    containers = ContainerService(layout, settings, ImageService(layout), None)
    c = Container("ab" * 32, "half", "img", "img", "no-such-runtime", "/nonexistent", ["sh"], "2026-01-01T00:00:00Z")
    containers.store.save(c)
    work = tmp_path / "root" / "tmp" / "restore-x"
    work.mkdir(parents=True)
    layout.container(c.id).pending_restore.write_text(json.dumps(fmt.PendingRestore(Path("/a"), work).to_dict()))
    assert containers.interrupted(c)
    with pytest.raises(NotFoundError, match="interrupted restore was cleaned up"):
        containers.inspect_record("half")
    assert containers.store.find("half") is None and not work.exists()
    assert containers.list(all_containers=True) == []


def test_container_service_alone_finishes_a_cut_checkpoint_marker(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "run")
    settings = Settings(root=layout.root, runroot=layout.runroot, default_runtime="crun")
    containers = ContainerService(layout, settings, ImageService(layout), None)
    c = Container("cd" * 32, "cut", "img", "img", "crun", "/nonexistent", ["sh"], "t", status=Status.EXITED)
    containers.store.save(c)
    layout.container(c.id).pending_checkpoint.write_text('{"work": ')  # cut by a crash
    assert containers.inspect_record("cut").status == Status.EXITED
    assert not layout.container(c.id).pending_checkpoint.exists()


# ===================================== a failed export, then a failed revival ================
class FakeContainers:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.store = ContainerStore(layout)

    def paths(self, cid: str) -> object:
        return self.layout.container(cid)


def test_failed_revival_is_reported_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "run")
    fake = FakeContainers(layout)
    c = Container("ef" * 32, "web", "img", "img", "crun", "/usr/bin/crun", ["sh"], "t", status=Status.RUNNING)
    fake.store.save(c)
    images = layout.container(c.id).checkpoint
    images.mkdir(parents=True)
    (images / fmt.INVENTORY_IMG).write_bytes(b"inv")
    failure = AmberError("crun could not restore container web", details=["criu: Error (mount.c:1): boom"])

    def revive(containers: object, c: Container, work: Path) -> None:
        raise failure

    monkeypatch.setattr(recovery, "revive", revive)
    service = CheckpointService(layout, fake, ImageService(layout))  # type: ignore[arg-type]
    work = tmp_path / "root" / "tmp" / "ckpt-x"
    work.mkdir(parents=True)
    opts = CheckpointOptions(export=tmp_path / "web.tar")
    with pytest.raises(AmberError) as err:
        service._export_failed(c, work, opts, OSError(28, "No space left on device"), stopped=True)
    message = err.value.message
    assert "could not write checkpoint archive" in message and "No space left on device" in message
    assert "could not be restored from its images" in message and "crun could not restore" in message
    assert "still running" not in message + (err.value.hint or "")
    assert err.value.__cause__ is failure and "criu: Error (mount.c:1): boom" in err.value.details
    assert f"amber restore {c.name}" in (err.value.hint or "")
    assert fake.store.get(c.id).status == Status.CHECKPOINTED and not work.exists()


def test_failed_export_with_revival_says_still_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "run")
    fake = FakeContainers(layout)
    c = Container("ef" * 32, "web", "img", "img", "crun", "/usr/bin/crun", ["sh"], "t", status=Status.RUNNING)
    revived: list[str] = []
    monkeypatch.setattr(recovery, "revive", lambda containers, c, work: revived.append(c.name))
    service = CheckpointService(layout, fake, ImageService(layout))  # type: ignore[arg-type]
    opts = CheckpointOptions(export=tmp_path / "web.tar")
    with pytest.raises(AmberError, match="could not write checkpoint archive") as err:
        service._export_failed(c, tmp_path / "w", opts, OSError(28, "No space left on device"), stopped=True)
    assert revived == ["web"] and "still running" in (err.value.hint or "")
    service._export_failed(c, tmp_path / "w", opts, KeyboardInterrupt(), stopped=False)  # re-raised by the caller
