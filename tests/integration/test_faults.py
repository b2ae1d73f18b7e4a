"""Faults on the real stack: amber killed mid-export or mid-restore, a full disk, two commands at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amber.adapters.checkpoint_archive import read_head
from amber.adapters.run import run
from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import Amber, mounts_under
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above

pytestmark = pytest.mark.root


def amber_process(
    amber: Amber, *argv: str, kill_at: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **(env or {})}
    if kill_at:
        env["AMBER_TEST_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot), *argv]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_mid_export_container_runs_again(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar.zst"
    proc = amber_process(amber, "checkpoint", "-e", str(archive), "cnt", kill_at="after-dump")
    assert proc.wait(60) == -9
    assert not archive.exists()
    # The next command finds the container stopped by the dump and brings it back from its images.
    c = amber.fresh_engine().containers.list()
    assert [x.name for x in c] == ["cnt"] and c[0].status == Status.RUNNING
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))
    assert list((amber.root / "tmp").iterdir()) == []
    assert list(tmp_path.glob(".cnt.tar.zst*")) == []
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0  # and it can be checkpointed again


def test_killed_mid_restore_leaves_nothing(
    amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_counter(amber, demo_image, "crun")
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    assert amber("rm", "cnt") == 0
    size = archive.stat().st_size
    proc = amber_process(amber, "restore", "-i", str(archive), kill_at="after-extract")
    assert proc.wait(60) == -9
    capsys.readouterr()
    assert amber("ps", "-a") == 0
    assert "cnt" not in capsys.readouterr().out
    assert mounts_under(amber.root / "containers") == []
    assert os.listdir(amber.root / "containers") == []
    assert archive.stat().st_size == size
    assert amber("restore", "-i", str(archive)) == 0  # a retry works
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING


def test_full_disk_during_export(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], timeout=60)
    try:
        start_counter(amber, demo_image, runtime)
        capsys.readouterr()
        assert amber("checkpoint", "-e", str(small / "cnt.tar"), "-c", "none", "cnt") != 0
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "hint: " in err
        assert os.listdir(small) == []
        assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING
        wait_counter_above(amber, "cnt", counter(amber, "cnt"))
    finally:
        run(["umount", str(small)], timeout=60)


def test_two_checkpoints_at_once(amber: Amber, demo_image: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, "crun")
    procs = [amber_process(amber, "checkpoint", "-R", "-e", str(tmp_path / f"{i}.tar"), "cnt") for i in range(2)]
    results = [(p.wait(60), p.stderr.read().decode() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0
    if codes[1] != 0:  # the loser is told, clearly, and loses nothing
        assert codes[1] == ExitCode.CONFLICT
        assert any("busy" in err for _, err in results)
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING


def test_checkpoint_while_another_command_holds_the_lock(amber: Amber, demo_image: str, tmp_path: Path) -> None:
    """Contention made certain: the test holds the container's lock as another amber command would."""
    start_counter(amber, demo_image, "crun")
    engine = amber.fresh_engine()
    archive = tmp_path / "cnt.tar"
    with engine.containers.lock(engine.containers.store.get("cnt")):
        # It waits for the lock a bounded time (AMBER_LOCK_WAIT, here 2 s), then says busy.
        proc = amber_process(amber, "checkpoint", "-R", "-e", str(archive), "cnt", env={"AMBER_LOCK_WAIT": "2"})
        code = proc.wait(120)
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == ExitCode.CONFLICT, err
    assert "busy" in err and err.startswith("error: ") and "hint: " in err
    assert not archive.exists()
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING
    assert amber("checkpoint", "-R", "-e", str(archive), "cnt") == 0  # free again: it works


def test_restore_racing_rm(amber: Amber, demo_image: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, "crun")
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-R", "-e", str(archive), "cnt") == 0
    restore = amber_process(amber, "restore", "-i", str(archive), "--name", "twin")
    rm = amber_process(amber, "rm", "-f", "twin")
    assert restore.wait(60) == 0
    rm_code = rm.wait(60)
    assert rm_code in (0, ExitCode.NOT_FOUND, ExitCode.CONFLICT)
    names = {c.name: c.status for c in amber.fresh_engine().containers.list(all_containers=True)}
    assert names.get("cnt") == Status.RUNNING
    assert names.get("twin") in (None, Status.RUNNING)


def test_restore_failing_inside_criu_leaves_nothing(
    amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import FIXTURES

    if not (FIXTURES / "busybox-rootfs.tar").is_file():
        pytest.skip("podman fixtures not present")
    start_counter(amber, demo_image, "crun")
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    # Another host whose "localhost/demo:latest" is a different busybox: CRIU finds the binary
    # the process had mapped changed, and refuses, late, inside its restore.
    other = Amber(tmp_path / "r2", tmp_path / "rr2")
    try:
        assert other("image", "import", str(FIXTURES / "busybox-rootfs.tar"), "localhost/demo:latest") == 0
        capsys.readouterr()
        assert other("restore", "-i", str(archive)) == ExitCode.ERROR
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "hint: " in err and "Traceback" not in err
        assert "could not restore container cnt" in err, err
        assert other.fresh_engine().containers.list(all_containers=True) == []
        assert mounts_under(other.root) == [] and mounts_under(other.runroot) == []
        cid = str(read_head(archive).config["id"])
        assert list(Path("/sys/fs/cgroup").glob(f"*/amber/amber-{cid}")) == []
        assert run(["pgrep", "-f", f"conmon.*{cid}"], check=False, timeout=60).returncode != 0  # nothing left running
    finally:
        other.cleanup()
