"""podman's container lifecycle, under runc and crun: exec under conmon (its pipes, never ours),
exit codes that are never lost, pause/unpause, --rm, the kept checkpoint after -R and stop,
stop -a / rm -a / rm -t, the `container ...` spellings."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import pytest

from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import Amber, mounts_under
from tests.integration.test_checkpoint import COUNTER, counter, start_counter, wait_counter_above
from tests.integration.test_containers import wait_for

pytestmark = pytest.mark.root


def cgroup_file(amber: Amber, name: str, controller: str, file: str) -> Path:
    """A file of the container's cgroup (this machine kind has cgroup v1: one tree a controller)."""
    c = amber.fresh_engine().containers.store.get(name)
    spec = json.loads(amber.engine.containers.paths(c.id).config_json.read_text())
    return Path("/sys/fs/cgroup") / controller / str(spec["linux"]["cgroupsPath"]).lstrip("/") / file


def pids_in(amber: Amber, name: str) -> list[int]:
    """The container's processes (host PIDs), from its cgroup."""
    return [int(x) for x in cgroup_file(amber, name, "pids", "cgroup.procs").read_text().split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def daemons(amber: Amber) -> list[int]:
    """The `sleep 1001` and `sleep 1002` that exec started in container cnt."""
    return [p for p in pids_in(amber, "cnt") if cmdline(p).startswith(("sleep\x001001", "sleep\x001002"))]


def test_exec_daemons_use_conmon_pipes_and_do_not_block_checkpoint(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    assert amber("exec", "-d", "cnt", "sh", "-c", "exec sleep 1001") == 0
    began = time.monotonic()
    assert amber("exec", "cnt", "sh", "-c", "sleep 1002 &") == 0
    assert time.monotonic() - began < 10, "exec waited for the background process"
    assert wait_for(lambda: len(daemons(amber)) == 2)
    for pid in daemons(amber):
        for fd in ("0", "1", "2"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            assert target.startswith(("pipe:", "/dev/null")), (fd, target)  # conmon's, not ours
    archive = tmp_path / "cnt.tar.gz"
    assert amber("checkpoint", "--export", str(archive), "cnt") == 0
    assert amber("rm", "cnt") == 0
    assert amber("restore", "--import", str(archive)) == 0
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))
    # CRIU dumps the init's process tree: the orphaned daemon (now the init's child) comes back;
    # the `exec -d` process, conmon's child outside the tree, is not dumped (as with podman).
    assert [cmdline(p) for p in daemons(amber)] == ["sleep\x001002\x00"]
    assert amber("checkpoint", "cnt") == 0  # and again, from the restored container
    assert amber("restore", "cnt") == 0


def test_exec_options(
    amber: Amber, demo_image: str, runtime: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert amber("run", "-d", "--name", "x", "-w", "/tmp", "--runtime", runtime, demo_image, "sleep", "1000") == 0
    capfd.readouterr()
    assert amber("exec", "x", "sh", "-c", "echo $PWD") == 0
    assert capfd.readouterr().out == "/tmp\n"  # the container's working directory, either runtime
    assert amber("exec", "-w", "/etc", "-e", "GREETING=hi", "x", "sh", "-c", "echo $PWD $GREETING") == 0
    assert capfd.readouterr().out == "/etc hi\n"
    assert amber("exec", "-u", "1000:1001", "x", "grep", "-E", "^(Uid|Gid)", "/proc/self/status") == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines[0].split()[1] == "1000" and lines[1].split()[1] == "1001"
    assert amber("exec", "x", "sh", "-c", "echo out; echo err >&2; exit 3") == 3
    got = capfd.readouterr()
    assert (got.out, got.err) == ("out\n", "err\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))
    assert amber("exec", "-i", "x", "wc", "-l") == 0
    assert capfd.readouterr().out.strip() == "2"
    assert amber("exec", "-u", "nobody", "x", "true") == ExitCode.USAGE
    assert "no user 'nobody'" in capfd.readouterr().err


def test_stop_fifty_times_never_loses_the_exit_code(
    amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    eng = amber.engine.containers
    trap = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
    assert amber("run", "-d", "--name", "t", "--runtime", runtime, demo_image, "sh", "-c", trap) == 0
    assert (
        amber("run", "-d", "--name", "k", "--stop-timeout", "1", "--runtime", runtime, demo_image, "sleep", "1000") == 0
    )
    usr = "trap 'exit 5' USR1; while :; do sleep 0.1; done"
    args = ["--stop-signal", "USR1", "--runtime", runtime, demo_image, "sh", "-c", usr]
    assert amber("run", "-d", "--name", "u", *args) == 0
    assert amber("run", "-d", "--name", "s", "--runtime", runtime, demo_image, "sh", "-c", "sleep 0.2; exit 4") == 0
    plan = [("t", 7)] * 30 + [("k", 137)] * 8 + [("u", 5)] * 6 + [("s", 4)] * 6
    for i, (name, want) in enumerate(plan):
        if name == "s":
            c = eng.wait(name, timeout=30)
        else:
            time.sleep(0.15)  # let the shell set its trap
            assert amber("stop", name) == 0
            c = eng.inspect_record(name)
        assert (c.status, c.exit_code) == (Status.EXITED, want), (i, name, c.exit_code)
        capsys.readouterr()
        assert amber("ps", "-a") == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if f" {name} " in line)
        assert f"exited ({want})" in row
        assert amber("start", name) == 0
    assert amber("stop", "-a") == 0
    assert all(c.status == Status.EXITED for c in eng.list(all_containers=True))
    assert amber("rm", "-a") == 0
    assert eng.list(all_containers=True) == []
    assert mounts_under(amber.root) == []


def test_stop_t_0_kills_at_once_as_podman(amber: Amber, demo_image: str, runtime: str) -> None:
    """podman's StopContainer sends the stop signal only when the timeout is above 0: a program
    that would exit 7 on TERM ends with KILL's 137."""
    trap = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
    assert amber("run", "-d", "--name", "t0", "--runtime", runtime, demo_image, "sh", "-c", trap) == 0
    time.sleep(0.15)  # let the shell set its trap
    assert amber("stop", "-t", "0", "t0") == 0
    c = amber.engine.containers.inspect_record("t0")
    assert (c.status, c.exit_code) == (Status.EXITED, 137)
    assert amber("rm", "t0") == 0
    assert mounts_under(amber.root) == []


def test_pause_unpause_and_checkpoint_of_a_paused_container(
    amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start_counter(amber, demo_image, runtime)
    assert amber("pause", "cnt") == 0
    c = amber.engine.containers.inspect_record("cnt")
    assert c.status == Status.PAUSED
    st = amber.engine.containers.runtime_state(c)
    assert st is not None and st.status == "paused"
    frozen = counter(amber, "cnt")
    time.sleep(0.5)
    assert counter(amber, "cnt") == frozen
    capsys.readouterr()
    assert amber("checkpoint", "cnt") == ExitCode.CONFLICT
    assert "cannot checkpoint containers that have been paused" in capsys.readouterr().err
    assert amber("exec", "cnt", "true") == ExitCode.CONFLICT
    assert amber("container", "unpause", "cnt") == 0
    wait_counter_above(amber, "cnt", frozen)
    assert amber("unpause", "cnt") == ExitCode.CONFLICT
    assert amber("container", "pause", "cnt") == 0
    assert amber("stop", "cnt") == 0  # a paused container stops too
    assert amber.engine.containers.inspect_record("cnt").status == Status.EXITED


def test_detached_rm_and_the_migration_flow(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    assert amber("run", "-d", "--rm", "--name", "gone", "--runtime", runtime, demo_image, "sh", "-c", "sleep 0.3") == 0
    assert wait_for(lambda: amber.engine.containers.store.find("gone") is None)
    assert amber("run", "-d", "--rm", "--name", "mig", "--runtime", runtime, demo_image, "sh", "-c", COUNTER) == 0
    wait_counter_above(amber, "mig", 3)
    assert amber("checkpoint", "mig") == ExitCode.CONFLICT  # a --rm container: only with --export
    archive = tmp_path / "mig.tar.gz"
    assert amber("checkpoint", "--export", str(archive), "mig") == 0
    assert amber.engine.containers.store.find("mig") is None  # removed after the export
    assert amber("restore", "--import", str(archive)) == 0  # under the same name
    assert amber.engine.containers.inspect_record("mig").status == Status.RUNNING
    wait_counter_above(amber, "mig", counter(amber, "mig"))


def test_kept_checkpoint_restored_after_stop_and_restored_flag(amber: Amber, demo_image: str, runtime: str) -> None:
    start_counter(amber, demo_image, runtime)
    assert amber("checkpoint", "-R", "cnt") == 0
    wait_counter_above(amber, "cnt", counter(amber, "cnt") + 3)
    assert amber("stop", "-t", "1", "cnt") == 0
    at_stop = counter(amber, "cnt")
    assert amber("restore", "cnt") == 0  # podman restores the kept checkpoint
    c = amber.engine.containers.inspect_record("cnt")
    assert (c.status, c.restored) == (Status.RUNNING, True)
    assert wait_for(lambda: counter(amber, "cnt") < at_stop)  # counting on from the checkpoint
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))
    assert amber("stop", "-t", "1", "cnt") == 0
    assert amber("start", "cnt") == 0
    assert amber.engine.containers.inspect_record("cnt").restored is False


def test_rm_time_and_container_spellings(
    amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trap = "trap 'exit 9' TERM; while :; do sleep 0.1; done"
    assert amber("container", "run", "-d", "--name", "r", "--runtime", runtime, demo_image, "sh", "-c", trap) == 0
    assert amber("container", "create", "--name", "made", "--runtime", runtime, demo_image, "true") == 0
    capsys.readouterr()
    assert amber("container", "ls", "-a", "-q") == 0
    assert len(capsys.readouterr().out.split()) == 2
    assert amber("container", "exec", "r", "echo", "hi") == 0
    assert amber("container", "inspect", "r") == 0
    assert amber("container", "logs", "r") == 0
    time.sleep(0.15)  # let the shell set its trap
    assert amber("rm", "r") == ExitCode.CONFLICT
    assert wait_for(lambda: amber.engine.containers.inspect_record("r").status == Status.RUNNING)
    began = time.monotonic()
    assert amber("container", "rm", "-f", "-t", "5", "r") == 0  # TERM first: the trap ran
    assert time.monotonic() - began < 5
    assert amber("container", "start", "made") == 0
    assert amber("container", "wait", "made") == 0
    assert amber("container", "rm", "-a") == 0
    assert amber.engine.containers.list(all_containers=True) == []


TCP_PAIR = (
    "sleep 100000 | nc -l -p 7000 > /tmp/server.out & sleep 0.3; "
    "(while :; do echo ping; sleep 0.1; done) | nc 127.0.0.1 7000 & " + COUNTER
)


def nc_pids(amber: Amber, name: str) -> list[int]:
    return [p for p in pids_in(amber, name) if cmdline(p).startswith("nc\x00")]


def received(amber: Amber, name: str) -> int:
    upper = amber.engine.containers.paths(amber.engine.containers.store.get(name).id).upper
    return len((upper / "tmp" / "server.out").read_text().splitlines())


def test_restore_tcp_close_with_a_real_connection(amber: Amber, demo_image: str, runtime: str) -> None:
    assert amber("run", "-d", "--name", "tcp", "--runtime", runtime, demo_image, "sh", "-c", TCP_PAIR) == 0
    assert wait_for(lambda: len(nc_pids(amber, "tcp")) == 2 and received(amber, "tcp") > 3)
    assert amber("checkpoint", "--tcp-established", "tcp") == 0
    assert amber("restore", "--tcp-established", "tcp") == 0  # the connection comes back open
    got = received(amber, "tcp")
    assert wait_for(lambda: received(amber, "tcp") > got + 3)
    assert len(nc_pids(amber, "tcp")) == 2
    assert amber("checkpoint", "--tcp-established", "tcp") == 0
    assert amber("restore", "--tcp-close", "tcp") == 0  # now it comes back closed
    assert wait_for(lambda: nc_pids(amber, "tcp") == [])  # both ends saw it closed and quit
    wait_counter_above(amber, "tcp", counter(amber, "tcp"))  # the container itself runs on


def test_run_options_and_limits_survive_checkpoint_and_restore(
    amber: Amber, demo_image: str, runtime: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# the app's settings\nMODE=prod\n\nLEVEL=3\n")
    limits = ["--memory", "64m", "--cpus", "0.5", "--pids-limit", "50"]
    opts = [*limits, "--hostname", "web1", "--env-file", str(env_file), "--label", "app=web", "--ipc", "shareable"]
    opts += ["--stop-signal", "HUP", "--stop-timeout", "3"]
    assert amber("run", "-d", "--name", "svc", "--runtime", runtime, *opts, demo_image, "sh", "-c", COUNTER) == 0
    wait_counter_above(amber, "svc", 3)
    capfd.readouterr()
    assert amber("exec", "svc", "sh", "-c", "cat /proc/sys/kernel/hostname; echo $MODE $LEVEL") == 0
    assert capfd.readouterr().out == "web1\nprod 3\n"
    assert amber.engine.containers.store.get("svc").labels == {"app": "web"}

    def limits_of() -> tuple[str, str, str]:
        return (
            cgroup_file(amber, "svc", "memory", "memory.limit_in_bytes").read_text().strip(),
            cgroup_file(amber, "svc", "cpu", "cpu.cfs_quota_us").read_text().strip(),
            cgroup_file(amber, "svc", "pids", "pids.max").read_text().strip(),
        )

    assert limits_of() == (str(64 * 1024 * 1024), "50000", "50")
    archive = tmp_path / "svc.tar.gz"
    assert amber("checkpoint", "--export", str(archive), "svc") == 0
    assert amber("rm", "svc") == 0
    assert amber("restore", "--import", str(archive)) == 0  # confinement keeps amber's own limits
    wait_counter_above(amber, "svc", counter(amber, "svc"))
    assert limits_of() == (str(64 * 1024 * 1024), "50000", "50")
    kept = amber.fresh_engine().containers.store.get("svc")  # podman's restore reads these from config.dump
    assert (kept.labels, kept.stop_signal, kept.stop_timeout) == ({"app": "web"}, "HUP", 3.0)
    capfd.readouterr()
    assert amber("exec", "svc", "sh", "-c", "cat /proc/sys/kernel/hostname; echo $MODE $LEVEL") == 0
    assert capfd.readouterr().out == "web1\nprod 3\n"
    assert amber("checkpoint", "svc") == 0 and amber("restore", "svc") == 0
    assert limits_of() == (str(64 * 1024 * 1024), "50000", "50")
    capfd.readouterr()
    assert amber("run", "--ipc", "host", demo_image, "true") == ExitCode.USAGE
    assert amber("run", "--memory", "lots", demo_image, "true") == ExitCode.USAGE
    assert amber("run", "--stop-signal", "NOPE", demo_image, "true") == ExitCode.USAGE


def test_run_user_and_the_checkpoint_of_a_non_root_process(
    amber: Amber, demo_image: str, runtime: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from amber.adapters import task_creds

    assert amber("run", "-d", "--name", "u", "-u", "1000:1000", "--runtime", runtime, demo_image, "sleep", "1000") == 0
    capfd.readouterr()
    assert amber("exec", "u", "grep", "^Uid", "/proc/self/status") == 0
    assert capfd.readouterr().out.split()[1] == "1000"  # exec runs as the container's user
    code = amber("checkpoint", "u")
    err = capfd.readouterr().err
    if task_creds.effective_caps() & (1 << task_creds.CAP_SYS_RESOURCE):
        assert code == 0  # this host's root may dump another user's process
        return
    assert code == ExitCode.PRECONDITION
    assert "runs as uid 1000" in err and "CAP_SYS_RESOURCE" in err and "hint:" in err
    c = amber.engine.containers.inspect_record("u")
    assert c.status == Status.RUNNING  # refused before anything was frozen
    st = amber.engine.containers.runtime_state(c)
    assert st is not None and st.status == "running"


def test_container_diff(amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = "echo x > /tmp/new; echo y >> /etc/motd; rm /etc/group; mkdir /data; touch /data/f; sleep 1000"
    assert amber("run", "-d", "--name", "d", "--runtime", runtime, demo_image, "sh", "-c", script) == 0
    assert wait_for(
        lambda: (amber.engine.containers.paths(amber.engine.containers.store.get("d").id).upper / "data" / "f").exists()
    )
    capsys.readouterr()
    assert amber("container", "diff", "d") == 0
    lines = capsys.readouterr().out.splitlines()
    want = ["A /data", "A /data/f", "C /etc", "D /etc/group", "C /etc/motd", "C /tmp", "A /tmp/new"]
    assert [line for line in lines if line in want] == want  # podman's lines, by path
    assert all(line[:2] in ("A ", "C ", "D ") for line in lines)
    assert amber("stop", "-t", "1", "d") == 0
    capsys.readouterr()
    assert amber("container", "diff", "--format", "json", "d") == 0  # exited: the upper dir is still there
    data = json.loads(capsys.readouterr().out)
    assert {"/data", "/data/f", "/tmp/new"} <= set(data["added"]) and "/etc/group" in data["deleted"]
    assert "/etc/motd" in data["changed"]


def test_ipc_shareable_is_joined_by_container_and_checkpointed_as_criu_can(
    amber: Amber, demo_image: str, runtime: str, capfd: pytest.CaptureFixture[str]
) -> None:
    def ipc_ns(name: str) -> str:
        pid = amber.fresh_engine().containers.store.get(name).pid
        assert pid
        return os.readlink(f"/proc/{pid}/ns/ipc")

    run = ["run", "-d", "--runtime", runtime]
    assert amber(*run, "--name", "owner", "--ipc", "shareable", demo_image, "sh", "-c", COUNTER) == 0
    assert amber(*run, "--name", "priv", demo_image, "sleep", "1000") == 0
    assert amber(*run, "--name", "guest", "--ipc", "container:owner", demo_image, "sleep", "1000") == 0
    assert ipc_ns("guest") == ipc_ns("owner") != ipc_ns("priv")  # one namespace, really shared
    assert ipc_ns("owner") != os.readlink("/proc/self/ns/ipc")
    capfd.readouterr()
    assert amber(*run, "--ipc", "container:priv", demo_image, "true") == ExitCode.CONFLICT
    assert "not shareable" in capfd.readouterr().err

    # CRIU restores an IPC namespace as a new one: what it cannot keep shared is refused up front
    assert amber("checkpoint", "guest") == ExitCode.CONFLICT
    assert "shares the IPC namespace" in capfd.readouterr().err
    assert amber("checkpoint", "owner") == ExitCode.CONFLICT
    assert "guest" in capfd.readouterr().err
    assert amber.fresh_engine().containers.store.get("owner").status == Status.RUNNING
    assert amber("stop", "-t", "1", "guest") == 0
    assert amber("checkpoint", "owner") == 0 and amber("restore", "owner") == 0  # nobody shares it now
    wait_counter_above(amber, "owner", counter(amber, "owner"))
    assert amber("start", "guest") == 0  # joins the restored namespace, found again at start
    assert ipc_ns("guest") == ipc_ns("owner")
    assert amber("stop", "-t", "1", "owner") == 0 and amber("rm", "-f", "guest") == 0
    assert amber("create", "--name", "late", "--ipc", "container:owner", demo_image, "true") == ExitCode.CONFLICT
    assert "not running" in capfd.readouterr().err
