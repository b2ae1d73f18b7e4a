"""Edges on the real stack: deep trees, odd bind destinations, unusable state roots, odd paths
given on the command line, a runtime that hangs."""

from __future__ import annotations

import json
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


LOOK_ALIKE = {"/etc/hosts": "hosts", "/etc_hosts": "etc_hosts", "/a/b": "a/b", "/a_b": "a_b"}


def _bind_sources(amber: Amber, name: str) -> dict[str, str]:
    c = amber.fresh_engine().containers.store.get(name)
    spec = json.loads(amber.engine.containers.paths(c.id).config_json.read_text())
    return {m["destination"]: m["source"] for m in spec["mounts"] if m["destination"] in LOOK_ALIKE}


def _cat(amber: Amber, capfd: pytest.CaptureFixture[str], name: str, path: str) -> str:
    capfd.readouterr()
    assert amber("exec", name, "cat", path) == 0
    return capfd.readouterr().out


def test_binds_at_look_alike_destinations_get_their_own_sources(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Binds at /etc/hosts and /etc_hosts, /a/b and /a_b: each restored bind gets a source of its
    own in the bundle (no FileExistsError, no shared source), and with --trust-archive its own again."""
    argv = ["run", "-d", "--name", "lk", "--runtime", runtime, "--network", "none"]
    for dest, label in LOOK_ALIKE.items():
        src = tmp_path / "src" / label.replace("/", "-")
        if dest == "/etc/hosts":
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text("127.0.0.1 look-alike\n")
        else:
            src.mkdir(parents=True)
            (src / "who").write_text(f"{label}\n")
        argv += ["-v", f"{src}:{dest}"]
    assert amber(*argv, demo_image, "sleep", "100000") == 0
    assert _cat(amber, capfd, "lk", "/a_b/who") == "a_b\n"
    archive = tmp_path / "lk.tar"
    assert amber("checkpoint", "-e", str(archive), "lk") == 0
    assert amber("rm", "lk") == 0
    capfd.readouterr()
    assert amber("restore", "-i", str(archive)) == 0, capfd.readouterr().err
    sources = _bind_sources(amber, "lk")
    bundle = amber.engine.containers.paths(amber.fresh_engine().containers.store.get("lk").id).bundle
    assert sorted(sources) == sorted(LOOK_ALIKE) and len(set(sources.values())) == len(LOOK_ALIKE), sources
    assert all(Path(s).is_relative_to(bundle) for s in sources.values()), sources
    assert amber("exec", "lk", "sh", "-c", "echo mine > /a/b/new") == 0
    capfd.readouterr()
    assert amber("exec", "lk", "ls", "/a_b") == 0 and capfd.readouterr().out == ""  # /a/b's file is not there
    assert amber("rm", "-f", "lk") == 0
    assert amber("restore", "-i", str(archive), "--trust-archive") == 0
    assert _bind_sources(amber, "lk") == {d: str(tmp_path / "src" / x.replace("/", "-")) for d, x in LOOK_ALIKE.items()}
    assert _cat(amber, capfd, "lk", "/a/b/who") == "a/b\n" and _cat(amber, capfd, "lk", "/a_b/who") == "a_b\n"
    assert _cat(amber, capfd, "lk", "/etc/hosts") == "127.0.0.1 look-alike\n"
    assert amber("rm", "-f", "lk") == 0
    assert mounts_under(amber.root) == [] and mounts_under(amber.runroot) == []


def test_memparse_output_is_private_and_never_follows_a_symlink(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`archive memparse --output` writes process memory (secrets): 0600 whatever the umask, and a
    symlink planted at the path (to a root-owned file) is refused, exit 4, its target untouched."""
    amber.engine.containers.run(demo_image, ["sleep", "100000"], name="mem", runtime_name=runtime)
    archive = tmp_path / "mem.tar"
    assert amber("checkpoint", "-e", str(archive), "mem") == 0
    victim = tmp_path / "victim"
    victim.write_text("root's own\n")
    victim.chmod(0o644)
    planted = tmp_path / "pages.bin"
    planted.symlink_to(victim)
    capfd.readouterr()
    assert amber("archive", "memparse", str(archive), "--pid", "1", "--output", str(planted)) == ExitCode.CONFLICT
    err = capfd.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and str(planted) in err, err
    assert victim.read_text() == "root's own\n" and planted.is_symlink() and os.readlink(planted) == str(victim)
    out = tmp_path / "new.bin"
    old = os.umask(0)
    try:
        assert amber("archive", "memparse", str(archive), "--pid", "1", "--output", str(out)) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o600 and out.stat().st_size > 0
    assert amber("archive", "memparse", str(archive), "--pid", "1", "--output", str(out)) == ExitCode.CONFLICT
