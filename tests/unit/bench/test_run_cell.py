"""bench/cells.py's run_cell and run_small driven on a fake engine: which commands a cell runs, in
which order, what each sample records, and that a failed restore is an error that leaves no
container. (The real engines are driven by the benchmark itself, which the lead runs.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import cells
import pytest
from cells import Cell, Sample, run_cell
from engines import SMALL_OPS
from harness import BenchError, Timed


class FakeEngine:
    name = "amber"

    def __init__(self, upper: Path, restore_fails: bool = False) -> None:
        self.upper_dir = upper
        (upper / "tmp").mkdir(parents=True)
        (upper / "tmp" / "ready").write_text("")
        self.calls: list[tuple[str, ...]] = []
        self.restore_fails = restore_fails
        self.running: set[str] = set()

    def _ok(self, *what: str, rc: int = 0) -> Timed:
        self.calls.append(what)
        return Timed(list(what), 0.5, rc, "", "", 2048, 4096)

    def setup(self, rootfs: Path) -> None:
        raise AssertionError("not used by run_cell")

    def start(self, name: str, runtime: str, argv: list[str]) -> Timed:
        self.running.add(name)
        return self._ok("start", name, runtime, *argv)

    def upper(self, name: str) -> Path:
        return self.upper_dir

    def checkpoint(self, name: str, dest: Path, compress: str, level: int | None = None) -> Timed:
        dest.write_bytes(b"x" * (100 if compress == "none" else 10 + (level or 0)))
        self.running.discard(name)
        return self._ok("checkpoint", compress, str(level))

    def restore(self, archive: Path, runtime: str | None = None) -> Timed:
        if runtime is not None:
            return self._ok("restore", "--runtime", runtime, rc=7)
        return self._ok("restore", archive.suffix, rc=1 if self.restore_fails else 0)

    def refused(self, res: Timed) -> bool:
        return res.returncode == 7

    def show(self, archive: Path) -> Timed | None:
        return self._ok("show")

    def small(self, op: str, name: str) -> Timed:
        return self._ok(op, name)

    def remove(self, name: str) -> None:
        self.running.discard(name)
        self.calls.append(("remove", name))

    def teardown(self) -> list[str]:
        return []


@pytest.fixture(autouse=True)
def counting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake container's counter rises by one at each read, as the workload's does over time."""
    ticks = itertools.count(1)
    monkeypatch.setattr(cells, "read_counter", lambda upper: next(ticks))
    monkeypatch.setattr(cells, "archive_work", lambda archive: (0.001, 512))


def ops(samples: list[Sample]) -> list[str]:
    return [s.op for s in samples]


def test_a_memory_cell_checkpoints_zstd_then_none_with_refusal_show_and_round_trip(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "upper")
    samples: list[Sample] = []
    run_cell(engine, Cell(64, "random", "crun"), 0, tmp_path, samples)
    per = ["checkpoint", "refuse", "show", "restore", "roundtrip"]
    assert ops(samples) == [f"{op}_zstd" for op in per] + [f"{op}_none" for op in per]
    assert engine.calls[0] == ("start", "bench-m64-r-crun-0", "crun", "/bin/workload", "64", "random")
    assert ("restore", "--runtime", "runc") in engine.calls  # the other runtime must be refused
    by = {s.op: s for s in samples}
    assert by["checkpoint_none"].archive_bytes == 100 and by["checkpoint_zstd"].archive_bytes == 10
    assert by["roundtrip_zstd"].seconds == 1.0 and by["roundtrip_zstd"].rss_kib == 2048
    assert by["refuse_zstd"].archive_work_seconds == 0.001 and by["refuse_zstd"].head_bytes_read == 512
    assert engine.calls[-1] == ("remove", "bench-m64-r-crun-0")
    assert not list(tmp_path.glob("amber-*.tar*"))  # the archives are deleted


def test_a_level_cell_runs_each_level_without_refusal_or_show(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "upper")
    samples: list[Sample] = []
    run_cell(engine, Cell(256, "compressible", "crun", "level", (1, 3)), 2, tmp_path, samples)
    assert ops(samples) == ["checkpoint_zstd1", "restore_zstd1", "roundtrip_zstd1",
                            "checkpoint_zstd3", "restore_zstd3", "roundtrip_zstd3"]  # fmt: skip
    assert [c for c in engine.calls if c[0] == "checkpoint"] == [
        ("checkpoint", "zstd", "1"),
        ("checkpoint", "zstd", "3"),
    ]
    assert ("restore", ".zst") in engine.calls


def test_a_small_cell_times_each_command_and_checks_the_restore(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "upper")
    samples: list[Sample] = []
    run_cell(engine, Cell(0, "httpd", "runc", "small"), 1, tmp_path, samples)
    assert ops(samples) == ["run", *SMALL_OPS]
    assert [c[0] for c in engine.calls[1:]] == [*SMALL_OPS, "remove"]
    start = engine.calls[0]
    assert start[:4] == ("start", "bench-small-httpd-runc-1", "runc", "/bin/sh") and "httpd" in start[-1]


def test_a_failed_restore_is_an_error_and_leaves_no_container(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "upper", restore_fails=True)
    samples: list[Sample] = []
    with pytest.raises(BenchError, match="restore --import of amber-bench-r2048-r-crun-0.tar.zst failed"):
        run_cell(engine, Cell(2048, "random", "crun", "rootfs"), 0, tmp_path, samples)
    assert ops(samples) == ["checkpoint_zstd", "refuse_zstd", "show_zstd"]
    assert not engine.running and engine.calls[-1][0] == "remove"
