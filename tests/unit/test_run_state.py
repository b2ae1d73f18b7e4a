"""The subprocess helper and the state primitives."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from amber.adapters.run import run
from amber.adapters.state import atomic_write_json, locked, read_json
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
    with pytest.raises(ConflictError, match="busy"), locked(tmp_path, "k", "thing"):
        pass
    proc.kill()
    proc.join()
    with locked(tmp_path, "k", "thing"):
        pass
