"""The subprocess helper and the state primitives."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from amber.adapters.run import run
from amber.adapters.state import atomic_write_json, create_private, locked, make_private_dir, read_json
from amber.errors import CommandError, ConflictError, PreconditionError


def test_run_captures_and_raises_with_context() -> None:
    assert run(["sh", "-c", "echo out; echo err >&2"], timeout=60).stdout == "out\n"
    with pytest.raises(CommandError) as exc:
        run(["sh", "-c", "echo boom >&2; exit 3"], timeout=60)
    assert exc.value.returncode == 3
    assert "boom" in exc.value.details[-1]
    assert exc.value.details[0].startswith("command: sh -c")


def test_run_missing_tool() -> None:
    with pytest.raises(PreconditionError, match="not installed"):
        run(["/nonexistent/tool"], timeout=60)


def test_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def _hold(lock_dir: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event) -> None:
    with locked(Path(lock_dir), "k", "thing"):
        ready.set()
        done.wait(10)


def test_lock_is_exclusive_and_dies_with_holder(tmp_path: Path) -> None:
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path), ready, done))
    proc.start()
    assert ready.wait(10)
    with pytest.raises(ConflictError, match="busy"), locked(tmp_path, "k", "thing", wait=False):
        pass
    proc.kill()
    proc.join()
    with locked(tmp_path, "k", "thing"):
        pass


def test_a_hanging_tool_times_out_naming_it() -> None:
    with pytest.raises(CommandError, match=r'"sleep 30" timed out after 0.2 s'):
        run(["sleep", "30"], timeout=0.2)


def test_lock_waits_a_bounded_time_and_names_the_holder(tmp_path: Path) -> None:
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path), ready, done))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(ConflictError, match=r"busy.*waited 0.3 s.*pid \d+") as exc:
            with locked(tmp_path, "k", "thing", wait=0.3):
                pass
        assert exc.value.hint
        done.set()  # released while the next one waits: it gets the lock
        with locked(tmp_path, "k", "thing", wait=10):
            pass
    finally:
        proc.kill()
        proc.join()


def test_private_dirs_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        make_private_dir(tmp_path / "root" / "containers")
        atomic_write_json(tmp_path / "other" / "x.json", {})
    finally:
        os.umask(old)
    for d in (tmp_path / "root", tmp_path / "root" / "containers", tmp_path / "other"):
        assert d.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "other" / "x.json").stat().st_mode & 0o777 == 0o600


def test_private_dir_refuses_a_file_or_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path)
    for bad in ("file", "link", "file/sub"):
        with pytest.raises(PreconditionError, match="cannot use") as exc:
            make_private_dir(tmp_path / bad)
        assert exc.value.hint


def test_create_private_is_exclusive_and_never_follows(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "planted").symlink_to(victim)
    for existing in ("planted", "victim"):
        with pytest.raises(FileExistsError):
            create_private(tmp_path / existing)
    assert victim.read_text() == "keep"
    old = os.umask(0)
    try:
        with create_private(tmp_path / "new") as f:
            f.write(b"secret")
    finally:
        os.umask(old)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o600
