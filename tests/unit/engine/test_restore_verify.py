"""The check after a restore: the restored init alive, in its own cgroup."""

from __future__ import annotations

from pathlib import Path

from amber.engine.restore_verify import inspect_init

CG = "/amber/amber-abc"


def _proc(tmp_path: Path, pid: int, state: str, cgroups: list[str]) -> Path:
    d = tmp_path / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (sh) {state} 1 1 1 0 -1\n")
    (d / "cgroup").write_text("".join(f"{i}:ctl{i}:{p}\n" for i, p in enumerate(cgroups)))
    return tmp_path


def test_alive_in_its_cgroup(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 42, "S", ["/", CG, CG + "/sub"])
    assert inspect_init(42, CG, runtime_status="running", proc=proc).problem is None


def test_each_problem_is_named_with_what_was_seen(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 42, "S", ["/", "/other"])
    seen = inspect_init(42, CG, runtime_status="running", proc=proc)
    assert seen.problem is not None and "not in the container's cgroup" in seen.problem
    assert "cgroup: /other" in seen.details
    assert "not in" in str(
        inspect_init(42, CG, runtime_status="running", proc=_proc(tmp_path / "x", 42, "S", [CG + "x"])).problem
    )
    zombie = _proc(tmp_path / "z", 42, "Z", [CG])
    assert "not alive" in str(inspect_init(42, CG, runtime_status="running", proc=zombie).problem)
    assert "not alive" in str(inspect_init(7, CG, runtime_status="running", proc=zombie).problem)
    assert "stopped" in str(inspect_init(42, CG, runtime_status="stopped", proc=proc).problem)
    assert "gone" in str(inspect_init(42, CG, runtime_status=None, proc=proc).problem)
