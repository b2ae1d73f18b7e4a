"""Faults lose nothing, on the real stack: CRIU killed mid-dump, amber killed after the archive,
-R exports taken frozen, locks that wait and name their holder, readers that never make a writer
busy."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from amber.adapters import cgroups
from amber.adapters.state import locked
from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import Amber, mounts_under
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above
from tests.integration.test_faults import amber_process

pytestmark = pytest.mark.root

# A `criu` that runs the real one and SIGKILLs it as soon as the container's init is frozen or
# ptrace-stopped (mid-dump): what a CRIU crashing, or killed by an operator, half way does.
KILLER = """#!/bin/sh
{python} {watcher} $$ </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
exec {criu} "$@"
"""
WATCHER = """
import os, signal, sys, time
criu = int(sys.argv[1])
def state(pid):
    try:
        return open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"
def frozen():
    try:
        return open("{freezer}").read().strip() != "THAWED"
    except OSError:
        return False
while state(criu) not in ("?", "Z"):
    if frozen() or state({pid}) in ("t", "T", "D"):
        os.kill(criu, signal.SIGKILL)
        open("{mark}", "w").close()
        break
    time.sleep(0.002)
"""


def _killer_path(amber: Amber, tmp_path: Path, name: str) -> tuple[dict[str, str], Path]:
    engine = amber.fresh_engine()
    c = engine.containers.store.get(name)
    rel = engine.containers.cgroups_path(c).strip("/")
    mark = tmp_path / "killed"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    watcher = tmp_path / "watcher.py"
    freezer = f"/sys/fs/cgroup/freezer/{rel}/freezer.state"
    watcher.write_text(WATCHER.format(pid=c.pid, freezer=freezer, mark=mark))
    script = bindir / "criu"
    script.write_text(KILLER.format(python=sys.executable, watcher=watcher, criu="/usr/sbin/criu"))
    script.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    return env, mark


def test_criu_killed_mid_dump_leaves_the_container_running(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    env, mark = _killer_path(amber, tmp_path, "cnt")
    archive = tmp_path / "cnt.tar"
    proc = amber_process(amber, "checkpoint", "-e", str(archive), "cnt", env=env)
    code = proc.wait(120)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert mark.exists(), f"CRIU was not killed mid-dump: {code} {err}"
    assert code == ExitCode.ERROR, err
    assert err.startswith("error: ") and "hint: " in err and "CRIU" in err, err
    assert not archive.exists()
    engine = amber.fresh_engine()
    c = engine.containers.inspect_record("cnt")
    assert c.status == Status.RUNNING
    assert not cgroups.frozen(engine.containers.cgroups_path(c))
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))  # it runs: not frozen for ever


def test_amber_killed_with_the_container_frozen_is_thawed_by_the_next_command(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    pid = amber.fresh_engine().containers.store.get("cnt").pid
    # -R exports freeze the container around dump + diff: amber killed right after the dump
    # leaves it frozen, with its pending marker; the next command thaws it (the same processes:
    # not killed and brought back from the images).
    proc = amber_process(amber, "checkpoint", "-R", "-e", str(tmp_path / "a.tar"), "cnt", kill_at="after-dump")
    assert proc.wait(120) == -9
    engine = amber.fresh_engine()
    c = engine.containers.list()
    assert [x.name for x in c] == ["cnt"] and c[0].status == Status.RUNNING
    assert c[0].pid == pid and not c[0].restored
    assert not cgroups.frozen(engine.containers.cgroups_path(c[0]))
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))


def test_amber_killed_after_the_archive_records_checkpointed(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar"
    proc = amber_process(amber, "checkpoint", "-e", str(archive), "cnt", kill_at="after-archive")
    assert proc.wait(120) == -9
    assert archive.is_file()
    c = amber.fresh_engine().containers.inspect_record("cnt")
    assert c.status == Status.CHECKPOINTED, c
    assert amber("rm", "cnt") == 0
    assert amber("restore", "-i", str(archive)) == 0  # the archive is whole
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))


WRITER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; done"  # sizes change all the time


def test_leave_running_exports_are_consistent(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    amber.engine.containers.run(demo_image, ["sh", "-c", WRITER], name="cnt", runtime_name=runtime)
    wait_counter_above(amber, "cnt", 100)
    for i in range(3):
        archive = tmp_path / f"{i}.tar"
        assert amber("checkpoint", "-R", "-e", str(archive), "-c", "none", "cnt") == 0
        engine = amber.fresh_engine()
        c = engine.containers.inspect_record("cnt")
        assert c.status == Status.RUNNING and not cgroups.frozen(engine.containers.cgroups_path(c))
        assert amber("restore", "-i", str(archive), "--name", f"copy{i}") == 0  # no "bad size"
        assert amber("rm", "-f", f"copy{i}") == 0
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))


def test_a_held_lock_is_waited_for_then_named(amber: Amber, demo_image: str, runtime: str) -> None:
    start_counter(amber, demo_image, runtime)
    c = amber.fresh_engine().containers.store.get("cnt")
    env = {"AMBER_LOCK_WAIT": "1"}
    with locked(amber.engine.layout.locks, c.id, "test"):
        started = time.monotonic()
        stop = amber_process(amber, "stop", "cnt", env=env)
        assert stop.wait(60) == ExitCode.CONFLICT
        assert time.monotonic() - started >= 1.0  # it waited, then gave up
        err = stop.stderr.read().decode() if stop.stderr else ""
        assert "busy" in err and f"pid {os.getpid()}" in err and "hint: " in err, err
        ps = amber_process(amber, "ps", env=env)  # a reader neither waits nor fails
        assert ps.wait(60) == 0
        kill = amber_process(amber, "kill", "cnt", env={"AMBER_LOCK_WAIT": "30"})
    assert kill.wait(60) == 0  # it waited for the lock, then killed
    deadline = time.monotonic() + 20
    while amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_checkpoint_all_while_ps_runs_in_a_loop(amber: Amber, demo_image: str, tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(6)]
    for name in names:
        amber.engine.containers.run(demo_image, ["sleep", "600"], name=name, runtime_name="crun")
    ckpt = amber_process(amber, "checkpoint", "-a")
    readers = 0
    while ckpt.poll() is None:
        assert amber_process(amber, "ps", "-a").wait(60) == 0
        readers += 1
    assert ckpt.returncode == 0, ckpt.stderr.read().decode() if ckpt.stderr else ""
    assert readers > 0
    statuses = {c.name: c.status for c in amber.fresh_engine().containers.list(all_containers=True)}
    assert statuses == dict.fromkeys(names, Status.CHECKPOINTED)


def test_state_root_is_private_whatever_the_umask(tmp_path: Path, demo_rootfs: Path) -> None:
    a = Amber(tmp_path / "fresh" / "root", tmp_path / "fresh" / "run")
    old = os.umask(0)
    try:
        assert a("image", "import", str(demo_rootfs), "localhost/demo:latest") == 0
    finally:
        os.umask(old)
        a.cleanup()
    for d in (a.root, a.root / "containers", a.root / "images", a.runroot, a.runroot / "locks"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_a_restore_whose_init_died_fails_loudly_and_cleans_up(
    amber: Amber,
    demo_image: str,
    runtime: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from amber.engine import restore_verify

    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    assert amber("rm", "cnt") == 0
    real = restore_verify.inspect_init

    def die_first(pid: int, cgroups_path: str, *, runtime_status: str | None) -> restore_verify.Seen:
        os.kill(pid, 9)  # the restored init dies between the runtime's "done" and amber's check
        deadline = time.monotonic() + 10
        while (Path("/proc") / str(pid)).exists() and "Z" not in _state(pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return real(pid, cgroups_path, runtime_status=runtime_status)

    monkeypatch.setattr(restore_verify, "inspect_init", die_first)
    capsys.readouterr()
    assert amber("restore", "-i", str(archive)) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and "restored, but " in err, err
    assert "init pid" in err  # what was seen
    assert amber.fresh_engine().containers.list(all_containers=True) == []
    assert mounts_under(amber.root) == [] and mounts_under(amber.runroot) == []


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
