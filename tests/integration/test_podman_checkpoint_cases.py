"""podman's checkpoint tests, written with amber's CLI and run under runc and crun.

From containers/podman test/system/520-checkpoint.bats and test/e2e/checkpoint_test.go: every
case that needs no networking (ports, IPs, TCP connections), volumes, pods or checkpoint images.
Each test's docstring is the podman case's name. ALPINE's `top` becomes the demo image's
`sleep`; podman's `rm -t 0 -fa` cleanup is the fixture's. Part A of issue 11 (exec -d, --rm,
pause, rm -a) has landed: no case is marked xfail.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from amber.errors import ExitCode
from tests.conftest import NOT_APPLICABLE, Amber
from tests.integration.test_containers import wait_for

pytestmark = pytest.mark.root

STATE = "{{.State.Status}}:{{.State.Running}}:{{.State.Paused}}:{{.State.Checkpointed}}"
TOP = ("sleep", "1000")


class Cli:
    """amber's CLI in-process: each call's exit code, stdout and stderr."""

    def __init__(self, amber: Amber, capsys: pytest.CaptureFixture[str], runtime: str, image: str) -> None:
        self.amber, self.capsys, self.runtime, self.image = amber, capsys, runtime, image

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        rc = self.amber(*argv)
        got = self.capsys.readouterr()
        return rc, got.out, got.err

    def ok(self, *argv: str) -> str:
        rc, out, err = self(*argv)
        assert rc == 0, f"amber {' '.join(argv)}: {err}"
        return out.strip()

    def run(self, *args: str, cmd: tuple[str, ...] = TOP) -> str:
        """`podman run -d ARGS IMAGE CMD`: the new container's id."""
        return self.ok("run", "-d", "--runtime", self.runtime, *args, self.image, *cmd)

    def running(self) -> int:
        return len(self.ok("ps", "-q").split())

    def containers(self) -> int:
        return len(self.ok("ps", "-a", "-q").split())

    def status(self) -> str:
        """podman's GetContainerStatus: `ps --all --format {{.Status}}`."""
        return self.ok("ps", "-a", "--format", "{{.Status}}")

    def logs(self, ref: str) -> list[str]:
        return self.ok("logs", ref).splitlines()


@pytest.fixture
def flock_image(amber: Amber, demo_rootfs: Path, tmp_path: Path) -> str:
    """The demo image with the host's flock(1) and the libraries it loads (busybox has no flock):
    podman's file-lock cases run `flock` inside ALPINE."""
    import shutil
    import subprocess

    flock = shutil.which("flock")
    assert flock is not None, "flock (util-linux) is needed"
    libs = [
        w
        for line in subprocess.run(["ldd", flock], capture_output=True, text=True, check=True).stdout.splitlines()
        for w in line.split()
        if w.startswith("/")
    ]
    rootfs = tmp_path / "flock-rootfs.tar"
    shutil.copy(demo_rootfs, rootfs)
    with tarfile.open(rootfs, "a") as tf:
        for path in (flock, *libs):
            real = Path(path).resolve()
            tf.add(str(real), arcname=path.lstrip("/").replace("usr/bin/", "bin/"))
    name = "localhost/demo-flock:latest"
    amber.engine.images.import_image(rootfs, name)
    return name


@pytest.fixture
def cli(amber: Amber, capsys: pytest.CaptureFixture[str], runtime: str, demo_image: str) -> Cli:
    return Cli(amber, capsys, runtime, demo_image)


# ===================================== 520-checkpoint.bats ====================================
def test_bats_checkpoint_basic_test(cli: Cli) -> None:
    """podman checkpoint - basic test"""
    cid = cli.run(cmd=("sh", "-c", "while :;do cat /proc/uptime; sleep 0.1;done"))
    assert wait_for(lambda: len(cli.logs(cid)) > 0)
    assert cli.ok("container", "checkpoint", cid) == cid
    assert cli.ok("inspect", "--format", STATE, cid) == "exited:false:false:true"
    before = len(cli.logs(cid))
    assert cli.ok("container", "restore", cid) == cid
    assert cli.ok("inspect", "--format", STATE, cid) == "running:true:false:false"
    assert wait_for(lambda: len(cli.logs(cid)) > before), "no new lines after the first restore"
    # again: crun issue 756, logs lost after the second checkpoint/restore
    cli.ok("container", "checkpoint", cid)
    before = len(cli.logs(cid))
    cli.ok("container", "restore", cid)
    assert wait_for(lambda: len(cli.logs(cid)) > before), "stdout went away after the second restore"
    cli.ok("rm", "-f", cid)


def test_bats_checkpoint_restore_print_ids_or_raw_input(cli: Cli) -> None:
    """podman checkpoint/restore print IDs or raw input"""
    ctr = cli.run()
    assert cli.ok("container", "checkpoint", "-a") == ctr
    assert cli.ok("container", "restore", "-a") == ctr
    cli.run("--name", "rawname")
    assert cli.ok("container", "checkpoint", "rawname") == "rawname"
    assert cli.ok("container", "restore", "rawname") == "rawname"
    cli.ok("rm", "-f", ctr, "rawname")


def test_bats_checkpoint_file_locks(cli: Cli, flock_image: str) -> None:
    """podman checkpoint --file-locks"""
    cli.image = flock_image
    action = 'flock test.lock sh -c "while [ -e /wait ];do sleep 0.5;done;for i in 1 2 3;do echo \\$i;sleep 0.5;done"'
    cid = cli.run(cmd=("sh", "-c", f"touch /wait; touch test.lock; echo READY; {action} & {action} & wait"))
    assert wait_for(lambda: cli.logs(cid)[:1] == ["READY"])
    assert cli.ok("container", "checkpoint", "--file-locks", cid) == cid
    assert cli.ok("inspect", "--format", STATE, cid) == "exited:false:false:true"
    assert cli.ok("container", "restore", "--file-locks", cid) == cid
    cli.ok("exec", "-d", cid, "rm", "/wait")
    cli.ok("wait", cid)
    assert "".join(cli.logs(cid)) == "READY123123"


def test_bats_checkpoint_restore_the_latest_container(cli: Cli) -> None:
    """podman checkpoint/restore the latest container"""
    ctr = cli.run()
    assert cli.ok("container", "checkpoint", "--latest") == ctr
    assert cli.ok("inspect", "--format", STATE, ctr) == "exited:false:false:true"
    assert cli.ok("container", "restore", "-l") == ctr
    assert cli.ok("inspect", "--format", STATE, ctr) == "running:true:false:false"
    cli.ok("rm", "-f", ctr)


# ===================================== checkpoint_test.go =====================================
def test_e2e_checkpoint_bogus_container(cli: Cli) -> None:
    """podman checkpoint bogus container"""
    rc, _, err = cli("container", "checkpoint", "foobar")
    assert rc == ExitCode.NOT_FOUND and "no such container" in err


def test_e2e_restore_bogus_container(cli: Cli) -> None:
    """podman restore bogus container"""
    rc, _, err = cli("container", "restore", "foobar")
    assert rc == ExitCode.NOT_FOUND and "no such container" in err


def _inspect(cli: Cli, ref: str) -> dict[str, object]:
    data = json.loads(cli.ok("inspect", ref))[0]
    assert isinstance(data, dict)
    state = data["State"]
    assert isinstance(state, dict)
    return state


def test_e2e_checkpoint_a_running_container_by_id(cli: Cli) -> None:
    """podman checkpoint a running container by id"""
    cid = cli.run()
    st = _inspect(cli, cid)
    assert st["Checkpointed"] is False and st["Restored"] is False
    assert st["CheckpointPath"] == st["CheckpointLog"] == st["RestoreLog"] == ""
    assert cli.ok("container", "checkpoint", "--keep", cid) == cid
    assert cli.running() == 0 and "Exited" in cli.status()
    st = _inspect(cli, cid)
    assert st["Checkpointed"] is True and st["Restored"] is False
    assert "userdata/checkpoint" in str(st["CheckpointPath"]) and str(st["CheckpointLog"]).endswith("dump.log")
    assert st["RestoreLog"] == ""
    assert cli.ok("container", "restore", "--keep", cid) == cid
    assert cli.running() == 1 and "Up" in cli.status()
    st = _inspect(cli, cid)
    assert st["Restored"] is True and st["Checkpointed"] is False
    assert "userdata/checkpoint" in str(st["CheckpointPath"]) and "userdata/restore.log" in str(st["RestoreLog"])
    cli.ok("stop", "-t", "2", cid)
    assert cli.running() == 0
    cli.ok("start", cid)
    assert cli.running() == 1
    st = _inspect(cli, cid)  # stop and start clear the checkpoint's information
    assert st["Checkpointed"] is False and st["Restored"] is False
    assert st["CheckpointPath"] == st["CheckpointLog"] == st["RestoreLog"] == ""
    cli.ok("rm", "-f", cid)


def test_e2e_checkpoint_a_running_container_by_name(cli: Cli, demo_image: str) -> None:
    """podman checkpoint a running container by name"""
    cli.run("--name", "test_name")
    assert cli.ok("container", "checkpoint", "test_name") == "test_name"
    assert cli.running() == 0 and "Exited" in cli.status()
    assert cli.ok("container", "restore", "test_name") == "test_name"
    assert cli.running() == 1 and "Up" in cli.status()
    # a container whose name is an image's name (#15055)
    short = demo_image.split("/")[-1].split(":")[0]
    cli.run("--name", short)
    cli.ok("container", "checkpoint", short)
    assert cli.running() == 1 and "Exited" in cli.status()
    cli.ok("container", "restore", short)
    assert cli.running() == 2 and "Exited" not in cli.status()
    cli.ok("rm", "-f", "test_name", short)


def test_e2e_pause_a_checkpointed_container_by_id(cli: Cli) -> None:
    """podman pause a checkpointed container by id"""
    cid = cli.run()
    cli.ok("container", "checkpoint", cid)
    assert cli.running() == 0 and "Exited" in cli.status()
    rc, _, err = cli("pause", cid)
    assert rc == ExitCode.CONFLICT and "not running" in err
    assert cli.running() == 0 and "Exited" in cli.status()
    cli.ok("container", "restore", cid)
    assert cli.running() == 1
    rc, _, err = cli("rm", cid)
    assert rc == ExitCode.CONFLICT and "running" in err
    assert cli.running() == 1
    cli.ok("rm", "-t", "1", "-f", cid)
    assert cli.running() == 0


def test_e2e_checkpoint_latest_running_container(cli: Cli) -> None:
    """podman checkpoint latest running container"""
    first = cli.run("--name", "first")
    second = cli.run("--name", "second")
    assert cli.ok("container", "checkpoint", "second") == "second"
    assert cli.running() == 1
    ps = cli.ok("ps", "-q", "--no-trunc")
    assert first in ps and second not in ps
    assert cli.ok("container", "restore", "second") == "second"
    assert cli.running() == 2 and "Up" in cli.status() and "Exited" not in cli.status()
    cli.ok("rm", "-f", "first", "second")
    assert cli.running() == 0


def test_e2e_checkpoint_all_running_container(cli: Cli) -> None:
    """podman checkpoint all running container"""
    cid1 = cli.run("--name", "first")
    cid2 = cli.run("--name", "second")
    out = cli.ok("container", "checkpoint", "-a")
    assert cid1 in out and cid2 in out and cli.running() == 0
    ps = cli.ok("ps", "-q", "--no-trunc")
    assert cid1 not in ps and cid2 not in ps
    out = cli.ok("container", "restore", "-a")
    assert cid1 in out and cid2 in out
    assert cli.running() == 2 and "Up" in cli.status() and "Exited" not in cli.status()
    cli.ok("rm", "-f", cid1, cid2)


def test_e2e_checkpoint_with_leave_running(cli: Cli) -> None:
    """podman checkpoint with --leave-running"""
    cid = cli.run()
    cli.ok("container", "checkpoint", "--leave-running", cid)
    assert cli.running() == 1 and "Up" in cli.status()
    cli.ok("stop", "-t", "2", cid)
    assert cli.running() == 0 and "Exited" in cli.status()
    cli.ok("container", "restore", cid)  # from the checkpoint kept by --leave-running
    assert cli.running() == 1 and "Up" in cli.status()
    cli.ok("rm", "-f", cid)


def _migrate(cli: Cli, tmp_path: Path, *compress: str) -> tuple[str, Path]:
    """run --rm, checkpoint --export (the container goes), restore --import."""
    cid = cli.run("--rm")
    assert cli.running() == 1
    archive = tmp_path / f"checkpoint-{cid}.tar.gz"
    assert cid in cli.ok("container", "checkpoint", cid, "-e", str(archive), *compress)
    assert cli.running() == 0 and cli.containers() == 0
    return cid, archive


def test_e2e_checkpoint_container_with_export_migration(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint container with export (migration)"""
    _cid, archive = _migrate(cli, tmp_path)
    cli.ok("container", "restore", "-i", str(archive), "-n", "restore_again")
    assert cli.running() == 1 and "Up" in cli.status()
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 2 and "Up" in cli.status()


def test_e2e_checkpoint_container_with_export_and_different_compression_algorithms(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint container with export and different compression algorithms"""
    cid, archive = _migrate(cli, tmp_path)
    cli.ok("container", "restore", "-i", str(archive))
    for algo in (("--compress", "zstd"), ("-c", "none"), ("-c", "gzip")):
        assert cid in cli.ok("container", "checkpoint", cid, "-e", str(archive), *algo)
        assert cli.running() == 0 and cli.containers() == 0
        cli.ok("container", "restore", "-i", str(archive))
        assert cli.running() == 1 and "Up" in cli.status()
    rc, _, err = cli("container", "checkpoint", cid, "-e", str(archive), "-c", "non-existing")
    assert rc == ExitCode.USAGE and "non-existing" in err
    assert cli.running() == 1 and cli.containers() == 1


def test_e2e_checkpoint_and_restore_container_with_root_file_system_changes(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint and restore container with root file-system changes"""
    cid = cli.run("--rm")
    cli.ok("exec", cid, "/bin/sh", "-c", f"echo test{cid}test > /test.output")
    cli.ok("exec", cid, "/bin/sh", "-c", "rm /etc/motd")
    diff = cli.ok("container", "diff", cid).splitlines()
    assert sorted(diff) == ["A /test.output", "C /etc", "D /etc/motd"]
    archive = tmp_path / "c.tar.gz"
    assert cid in cli.ok("container", "checkpoint", cid, "-e", str(archive))
    assert cli.running() == 0 and cli.containers() == 0
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 1 and cli.containers() == 1 and "Up" in cli.status()
    assert f"test{cid}test" in cli.ok("exec", cid, "cat", "/test.output")
    assert sorted(cli.ok("container", "diff", cid).splitlines()) == ["A /test.output", "C /etc", "D /etc/motd"]


def test_e2e_root_file_system_changes_using_ignore_rootfs_during_restore(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint and restore container with root file-system changes using --ignore-rootfs during restore"""
    cid = cli.run("--rm")
    cli.ok("exec", cid, "touch", "/test.output")
    archive = tmp_path / "c.tar.gz"
    assert cli.ok("container", "checkpoint", cid, "-e", str(archive)) == cid
    assert wait_for(lambda: cli.containers() == 0)
    cli.ok("container", "restore", "--ignore-rootfs", "-i", str(archive))
    assert cli.ok("ps", "-a", "--noheading", "--no-trunc", "--format", "{{.ID}} {{.State}}") == f"{cid} running"
    rc, _, _ = cli("exec", cid, "cat", "/test.output")
    assert rc == 1


def test_e2e_root_file_system_changes_using_ignore_rootfs_during_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint and restore container with root file-system changes using --ignore-rootfs during checkpoint"""
    cid = cli.run("--rm")
    cli.ok("exec", cid, "/bin/sh", "-c", f"echo test{cid}test > /test.output")
    archive = tmp_path / "c.tar.gz"
    assert cid in cli.ok("container", "checkpoint", "--ignore-rootfs", cid, "-e", str(archive))
    assert cli.running() == 0 and cli.containers() == 0
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 1 and cli.containers() == 1 and "Up" in cli.status()
    rc, _, _ = cli("exec", cid, "cat", "/test.output")
    assert rc == 1


def test_e2e_checkpoint_and_run_exec_in_restored_container(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint and run exec in restored container"""
    cid, archive = _migrate(cli, tmp_path)
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 1 and cli.containers() == 1 and "Up" in cli.status()
    cli.ok("exec", cid, "/bin/sh", "-c", f"echo {cid} > /test.output")
    assert cid in cli.ok("exec", cid, "cat", "/test.output")


def test_e2e_checkpoint_a_container_started_with_rm(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint a container started with --rm"""
    cid = cli.run("--rm")
    assert cli.running() == 1
    rc, _, err = cli("container", "checkpoint", cid)
    assert rc != 0 and "--rm" in err
    archive = tmp_path / "c.tar.gz"
    assert cid in cli.ok("container", "checkpoint", cid, "-e", str(archive))
    assert cli.running() == 0 and cli.containers() == 0
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 1 and "Up" in cli.status()


def _needs_dirty_tracking(cli: Cli, cid: str) -> None:
    rc, _, err = cli("container", "checkpoint", "-P", cid)
    if rc == ExitCode.PRECONDITION and "dirty memory" in err:
        cli.ok("rm", "-f", cid)
        pytest.skip(f"{NOT_APPLICABLE} the kernel has no dirty-memory tracking (podman skips: criu.MemTrack)")
    assert rc == 0, err


def test_e2e_checkpoint_container_with_pre_checkpoint(cli: Cli) -> None:
    """podman checkpoint container with --pre-checkpoint"""
    cid = cli.run()
    _needs_dirty_tracking(cli, cid)
    assert cli.running() == 1 and "Up" in cli.status()
    cli.ok("container", "checkpoint", "--with-previous", cid)
    assert cli.running() == 0 and "Exited" in cli.status()
    cli.ok("container", "restore", cid)
    assert cli.running() == 1 and "Up" in cli.status()
    cli.ok("rm", "-f", cid)


def test_e2e_checkpoint_container_with_export_and_statistics(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint container with export and statistics"""
    _cid, archive = _migrate(cli, tmp_path)
    # podman extracts with `tar xf`, which reads the default zstd (tarfile does not)
    dest = tmp_path / "dest"
    dest.mkdir()
    subprocess.run(["tar", "xf", str(archive), "-C", str(dest)], check=True)
    assert (dest / "stats-dump").is_file()


def test_e2e_checkpoint_and_restore_containers_with_print_stats(cli: Cli) -> None:
    """podman checkpoint and restore containers with --print-stats"""
    one, two = cli.run(), cli.run()
    cs = json.loads(cli.ok("container", "checkpoint", "-a", "--print-stats"))
    assert cli.running() == 0
    stats = cs["container_statistics"]
    assert len(stats) == 2
    for s in stats:
        assert cs["podman_checkpoint_duration"] > s["runtime_checkpoint_duration"] > s["criu_statistics"]["frozen_time"]
    ps = cli.ok("ps", "-q", "--no-trunc")
    assert one not in ps and two not in ps
    rs = json.loads(cli.ok("container", "restore", "-a", "--print-stats"))
    assert cli.running() == 2 and "Up" in cli.status() and "Exited" not in cli.status()
    assert len(rs["container_statistics"]) == 2
    for s in rs["container_statistics"]:
        assert rs["podman_restore_duration"] > s["runtime_restore_duration"]
    cli.ok("rm", "-f", one, two)


def test_e2e_checkpoint_and_restore_container_with_file_locks(cli: Cli, flock_image: str) -> None:
    """podman checkpoint and restore container with --file-locks"""
    cli.image = flock_image
    cli.run("--name", "test_name", cmd=("flock", "test.lock", "sh", "-c", "echo READY;sleep 100"))
    assert wait_for(lambda: cli.logs("test_name") == ["READY"])
    rc, _, _ = cli("container", "checkpoint", "test_name")
    assert rc != 0 and cli.running() == 1
    cli.ok("container", "checkpoint", "--file-locks", "test_name")
    assert cli.running() == 0 and "Exited" in cli.status()
    cli.ok("container", "restore", "--file-locks", "test_name")
    assert cli.running() == 1 and "Up" in cli.status()
    cli.ok("rm", "-f", "test_name")
    assert cli.running() == 0


def test_e2e_checkpoint_container_with_export_and_verify_runtime(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint container with export and verify runtime"""
    cid = cli.run("--rm")
    runtime = cli.ok("inspect", "--format", "{{.OCIRuntime}}", cid)
    archive = tmp_path / "c.tar.gz"
    cli.ok("container", "checkpoint", cid, "-e", str(archive))
    assert cli.running() == 0 and cli.containers() == 0
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 1 and "Up" in cli.status()
    assert cli.ok("inspect", "--format", "{{.OCIRuntime}}", cid) == runtime


def test_e2e_checkpoint_container_with_export_and_try_to_change_the_runtime(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint container with export and try to change the runtime"""
    other = "crun" if cli.runtime == "runc" else "runc"
    cid = cli.run("--rm")
    archive = tmp_path / "c.tar.gz"
    cli.ok("container", "checkpoint", cid, "-e", str(archive))
    assert cli.running() == 0 and cli.containers() == 0
    rc, _, err = cli("--runtime", other, "container", "restore", "-i", str(archive))
    assert rc == ExitCode.RUNTIME_MISMATCH and "cannot be restored with runtime" in err
    cli.ok("--runtime", cli.runtime, "container", "restore", "-i", str(archive))
    assert cli.ok("inspect", "--format", "{{.OCIRuntime}}", cid) == cli.runtime


def test_e2e_checkpoint_and_restore_dev_shm_content_with_export_and_import(cli: Cli, tmp_path: Path) -> None:
    """podman checkpoint and restore dev/shm content with --export and --import"""
    cid = cli.run("--rm")
    cli.ok("exec", cid, "/bin/sh", "-c", f"echo test{cid}test > /dev/shm/test.output")
    archive = tmp_path / "c.tar.gz"
    cli.ok("container", "checkpoint", cid, "-e", str(archive))
    assert cli.running() == 0 and cli.containers() == 0
    cli.ok("container", "restore", "-i", str(archive))
    assert cli.running() == 1 and "Up" in cli.status()
    assert f"test{cid}test" in cli.ok("exec", cid, "cat", "/dev/shm/test.output")
