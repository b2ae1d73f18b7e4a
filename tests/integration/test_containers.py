"""Real containers under runc and crun: run, logs, ps, exec, stop, kill, rm, and bad input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import FIXTURES, Amber, mounts_under

pytestmark = pytest.mark.root


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_run_logs_ps_rm(amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert amber("run", "-d", "--name", "c1", "--runtime", runtime, demo_image, "sh", "-c", "echo hi; sleep 1000") == 0
    capsys.readouterr()
    assert wait_for(lambda: [x.text for x in amber.engine.containers.logs("c1")] == ["hi"])
    assert amber("logs", "c1") == 0
    assert capsys.readouterr().out == "hi\n"
    assert amber("ps") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["CONTAINER", "ID"]
    row = out[1].split()
    assert row[1:5] == ["c1", demo_image, runtime, "running"]
    c = amber.engine.containers.store.get("c1")
    assert os.path.exists(f"/proc/{c.pid}")
    assert amber("rm", "-f", "c1") == 0
    assert wait_for(lambda: not os.path.exists(f"/proc/{c.pid}"))
    assert mounts_under(amber.root) == []
    assert not (amber.root / "containers" / c.id).exists()
    assert amber.engine.containers.runtime_for(c).state(c.id) is None


def test_global_runtime_option(amber: Amber, demo_image: str, runtime: str) -> None:
    assert main_global(amber, runtime, "run", "-d", "--name", "g", demo_image, "sleep", "100") == 0
    assert amber.engine.containers.store.get("g").runtime == runtime


def main_global(amber: Amber, runtime: str, *argv: str) -> int:
    from amber.cli import main

    return main(["--root", str(amber.root), "--runroot", str(amber.runroot), "--runtime", runtime, *argv])


def test_foreground_run_prints_output_and_exit_code(
    amber: Amber, demo_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert amber("run", "--name", "fg", demo_image, "sh", "-c", "cat /etc/motd; exit 3") == 3
    assert capsys.readouterr().out == "hello from amber\n"
    c = amber.engine.containers.inspect_record("fg")
    assert (c.status, c.exit_code) == (Status.EXITED, 3)
    assert mounts_under(amber.root) == []


@pytest.mark.skipif(not (FIXTURES / "busybox-rootfs.tar").is_file(), reason="podman fixtures not present")
def test_podman_fixture_image_runs(amber: Amber, capsys: pytest.CaptureFixture[str]) -> None:
    assert amber("image", "import", str(FIXTURES / "busybox-rootfs.tar"), "localhost/busybox:fixture") == 0
    capsys.readouterr()
    assert amber("run", "localhost/busybox:fixture", "cat", "/etc/motd") == 0
    assert capsys.readouterr().out == "hello\n"


def test_exec_stop_kill(amber: Amber, demo_image: str, runtime: str, capfd: pytest.CaptureFixture[str]) -> None:
    amber.engine.containers.run(demo_image, ["sleep", "1000"], name="e", runtime_name=runtime)
    capfd.readouterr()
    assert amber("exec", "e", "sh", "-c", "echo inside $((40+2))") == 0
    assert "inside 42" in capfd.readouterr().out
    c = amber.engine.containers.stop("e", timeout=1)
    assert c.status == Status.EXITED
    assert mounts_under(amber.root) == []
    amber.engine.containers.start("e")
    assert amber("kill", "-s", "KILL", "e") == 0
    assert wait_for(lambda: amber.engine.containers.inspect_record("e").status == Status.EXITED)
    assert amber.engine.containers.inspect_record("e").exit_code == 137


def test_ps_tells_the_truth_after_kill_9(amber: Amber, demo_image: str, runtime: str) -> None:
    c = amber.engine.containers.run(demo_image, ["sleep", "1000"], name="k", runtime_name=runtime)
    os.kill(c.pid, 9)
    assert wait_for(lambda: amber.fresh_engine().containers.inspect_record("k").status == Status.EXITED)
    got = amber.fresh_engine().containers.inspect_record("k")
    assert got.exit_code == 137
    assert mounts_under(amber.root) == []


def test_exited_container_shows_exit_code(amber: Amber, demo_image: str, capsys: pytest.CaptureFixture[str]) -> None:
    amber.engine.containers.run(demo_image, ["sh", "-c", "exit 7"], name="x")
    assert wait_for(lambda: amber.fresh_engine().containers.inspect_record("x").status == Status.EXITED)
    capsys.readouterr()
    assert amber("ps", "-a") == 0
    assert "exited (7)" in capsys.readouterr().out
    assert amber("ps", "-q") == 0
    assert capsys.readouterr().out == ""


def _assert_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("error: "), err
    assert any(line.startswith("hint: ") for line in lines), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_bad_input(amber: Amber, demo_image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert amber("run", "localhost/nope:1", "true") == ExitCode.NOT_FOUND
    _assert_error(capsys, "no such image")
    assert amber("rm", "ghost") == ExitCode.NOT_FOUND
    _assert_error(capsys, "no such container: ghost")
    amber.engine.containers.run(demo_image, ["sleep", "100"], name="dup")
    assert amber("run", "-d", "--name", "dup", demo_image, "true") == ExitCode.CONFLICT
    _assert_error(capsys, "already in use")
    assert amber("run", "--runtime", "youki", demo_image, "true") == ExitCode.PRECONDITION
    _assert_error(capsys, "'youki' is not installed", "runc", "crun")
    before = sorted(p.name for p in (amber.root / "containers").iterdir())
    assert amber("run", "-d", "--name", "nocmd", demo_image, "/bin/no-such-command") != 0
    _assert_error(capsys)
    assert sorted(p.name for p in (amber.root / "containers").iterdir()) == before
    assert [m for m in mounts_under(amber.root) if "nocmd" in m] == []
    assert len(mounts_under(amber.root / "containers")) == 1  # only "dup" is mounted


def test_corrupt_image_tarball(amber: Amber, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tarball" * 100)
    assert amber("image", "import", str(bad), "localhost/bad:1") == ExitCode.BAD_ARCHIVE
    _assert_error(capsys)
    assert amber.engine.images.list() == []


def test_not_root_is_told(amber: Amber, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed")
    tmp_path.chmod(0o755)
    cmd = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        sys.executable,
        "-m",
        "amber",
        "--root",
        str(tmp_path / "nobody-root"),
        "--runroot",
        str(tmp_path / "nobody-run"),
        "run",
        "localhost/demo:latest",
        "true",
    ]
    env = {"PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == ExitCode.PRECONDITION, proc.stderr
    assert proc.stderr.startswith("error: creating a container needs root")
    assert "hint: run amber as root" in proc.stderr
