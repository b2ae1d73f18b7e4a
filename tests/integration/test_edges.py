"""Edges on the real stack: deep trees, odd bind destinations, unusable state roots, odd paths
given on the command line, a runtime that hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amber.errors import ExitCode
from tests.conftest import Amber, mounts_under

pytestmark = pytest.mark.root

DEEP = 1100
NEST = f"cd /tmp && i=0; while [ $i -lt {DEEP} ]; do mkdir d && cd d; i=$((i+1)); done; touch leaf; sleep 600"


def _wait_leaf(amber: Amber, name: str) -> None:
    c = amber.fresh_engine().containers.store.get(name)
    leaf = amber.engine.containers.paths(c.id).upper / "tmp" / Path(*(["d"] * DEEP)) / "leaf"
    deadline = time.monotonic() + 60
    while not os.path.lexists(leaf):
        assert time.monotonic() < deadline, "the container did not make its tree"
        time.sleep(0.1)


def test_deep_tree_exports_restores_and_is_removed(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amber.engine.containers.run(demo_image, ["sh", "-c", NEST], name="deep", runtime_name=runtime)
    _wait_leaf(amber, "deep")
    archive = tmp_path / "deep.tar"
    capsys.readouterr()
    assert amber("checkpoint", "-e", str(archive), "-c", "none", "deep") == 0, capsys.readouterr().err
    assert amber("rm", "deep") == 0
    assert amber("restore", "-i", str(archive)) == 0, capsys.readouterr().err
    _wait_leaf(amber, "deep")
    cid = amber.fresh_engine().containers.store.get("deep").id
    assert amber("rm", "-f", "deep") == 0, capsys.readouterr().err
    assert not (amber.root / "containers" / cid).exists()
    assert mounts_under(amber.root) == []


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\nhint: " in err and "internal error" not in err, err
    return err


def test_odd_paths_on_the_command_line(amber: Amber, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    capsys.readouterr()
    assert amber("checkpoint", "--export", "", "x") == ExitCode.USAGE
    assert "empty path" in _err(capsys)
    for argv in (["restore", "--import", str(fifo)], ["archive", "show", str(fifo)], ["archive", "check", str(fifo)]):
        assert amber(*argv) == ExitCode.BAD_ARCHIVE  # at once: a FIFO is never opened for reading
        assert "not a regular file" in _err(capsys)
    for argv in (["ps", "--bogus"], ["checkpoint", "--no-such-flag"], ["no-such-command"]):
        with pytest.raises(SystemExit) as exc:  # argparse's mistakes, in amber's error shape
            amber(*argv)
        assert exc.value.code == ExitCode.USAGE
        _err(capsys)


def test_unusable_state_roots(tmp_path: Path, demo_rootfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file_root = tmp_path / "file"
    file_root.write_text("")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)], check=True, timeout=60)
    try:
        capsys.readouterr()
        for root in (file_root, readonly / "root"):
            a = Amber(root, tmp_path / "run")
            assert a("image", "import", str(demo_rootfs), "localhost/demo:latest") == ExitCode.PRECONDITION
            assert "cannot use" in _err(capsys)
        assert Amber(file_root, tmp_path / "run")("ps", "-a") == ExitCode.PRECONDITION
        assert "Not a directory" in _err(capsys)
    finally:
        subprocess.run(["umount", str(readonly)], check=True, timeout=60)
    assert file_root.read_text() == ""


def test_non_root_ps_is_a_precondition_error(amber: Amber, demo_image: str) -> None:
    amber.engine.containers.run(demo_image, ["sleep", "600"], name="idle", runtime_name="crun")
    argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    cmd = [*argv, sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot), "ps"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == ExitCode.PRECONDITION, res.stderr
    assert res.stderr.startswith("error: ") and "hint: " in res.stderr and "root" in res.stderr


def test_a_hanging_runtime_does_not_hang_amber(
    amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    capsys.readouterr()
    started = time.monotonic()
    assert amber("--runtime", str(hang), "run", "--name", "h", demo_image, "true") == ExitCode.ERROR
    assert time.monotonic() - started < 120
    err = _err(capsys)
    assert "hang --version" in err and "timed out" in err
    assert [c.name for c in amber.fresh_engine().containers.list(all_containers=True)] == []
    assert mounts_under(amber.root) == []
