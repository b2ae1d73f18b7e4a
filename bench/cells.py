"""One measurement cell (size x data kind x runtime) run on one engine, its repetitions and the
time budget."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from engines import Engine
from harness import BenchError, Timed, log

READY_TIMEOUT = 120.0
VERIFY_TIMEOUT = 10.0
# One repetition of one cell, both engines, before it is measured (2 cores, 1 GiB: about 45 s).
GUESS_FIXED_S = 8.0
GUESS_S_PER_MIB = 0.04


@dataclasses.dataclass(frozen=True)
class Cell:
    mib: int
    kind: str
    runtime: str

    @property
    def key(self) -> str:
        return f"{self.mib}MiB/{self.kind}/{self.runtime}"


@dataclasses.dataclass
class Sample:
    """One operation once: what the table and the JSON are made of."""

    engine: str
    cell: Cell
    op: str
    seconds: float
    rss_kib: int
    rss_tree_kib: int
    archive_bytes: int | None = None
    runtime_seconds: float | None = None  # the runtime's (CRIU's) part, from --print-stats
    archive_work_seconds: float | None = None  # refusals: amber's read_head, in-process
    head_bytes_read: int | None = None


def other_runtime(runtime: str) -> str:
    return "runc" if runtime == "crun" else "crun"


def read_counter(upper: Path) -> int | None:
    try:
        return int((upper / "tmp" / "counter").read_text().strip() or "0")
    except (OSError, ValueError):
        return None


def wait_ready(engine: Engine, name: str) -> Path:
    upper = engine.upper(name)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if (upper / "tmp" / "ready").is_file() and read_counter(upper) is not None:
            return upper
        time.sleep(0.05)
    raise BenchError(f"{engine.name}: the workload in {name} did not get ready in {READY_TIMEOUT:.0f} s")


def verify_restored(engine: Engine, name: str, before: int) -> int:
    """The restored counter must carry on: two rising values, both above the one read before."""
    upper = engine.upper(name)
    deadline = time.monotonic() + VERIFY_TIMEOUT
    seen: list[int] = []
    while time.monotonic() < deadline:
        value = read_counter(upper)
        if value is not None and value > before and (not seen or value > seen[-1]):
            seen.append(value)
            if len(seen) == 2:
                return value
        time.sleep(0.05)
    raise BenchError(
        f"{engine.name}: restored {name} does not count on from {before} (saw {seen}, "
        f"last value {read_counter(upper)}): the restore is broken"
    )


def runtime_seconds(res: Timed, key: str) -> float | None:
    """The runtime's own duration from --print-stats (podman's JSON shape), in seconds."""
    try:
        data = json.loads(res.stdout)
        return float(data["container_statistics"][0][f"runtime_{key}_duration"]) / 1e6
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def archive_work(archive: Path) -> tuple[float | None, int | None]:
    """How long amber's own archive reading takes when it refuses (read_head), in-process."""
    try:
        from amber.adapters import checkpoint_archive
    except ImportError:
        return None, None
    times = []
    bytes_read = None
    try:
        for _ in range(5):
            started = time.perf_counter()
            head = checkpoint_archive.read_head(archive)
            times.append(time.perf_counter() - started)
            bytes_read = head.bytes_read
    except Exception as exc:  # noqa: BLE001  # a changing library API must not stop the benchmark
        log(f"    (could not time read_head: {exc})")
        return None, None
    return statistics.median(times), bytes_read


def run_cell(engine: Engine, cell: Cell, rep: int, work: Path, samples: list[Sample]) -> None:
    name = f"bench-{cell.mib}-{cell.kind[0]}-{cell.runtime}-{rep}"
    engine.start(name, cell.runtime, cell.mib, cell.kind)
    try:
        upper = wait_ready(engine, name)
        running = True
        for compress in ("zstd", "none"):
            if not running:  # the zstd restore failed: take the uncompressed checkpoint afresh
                engine.start(name, cell.runtime, cell.mib, cell.kind)
                upper = wait_ready(engine, name)
            before = read_counter(upper) or 0
            archive = work / f"{engine.name}-{name}.tar{'.zst' if compress == 'zstd' else ''}"
            try:
                running = _one_archive(engine, cell, name, compress, archive, before, samples)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    archive.unlink()
            if running:
                upper = engine.upper(name)
    finally:
        engine.remove(name)


def _one_archive(
    engine: Engine, cell: Cell, name: str, compress: str, archive: Path, before: int, samples: list[Sample]
) -> bool:
    def add(op: str, res: Timed, **extra: Any) -> None:
        samples.append(
            Sample(engine.name, cell, f"{op}_{compress}", res.seconds, res.rss_kib, res.rss_tree_kib, **extra)
        )
        log(
            f"    {engine.name:6} {cell.key:22} {op}_{compress:5} {res.seconds:7.3f} s"
            f"  rss {res.rss_kib / 1024:6.1f} MiB"
        )

    res = engine.checkpoint(name, archive, compress).check(f"{engine.name} checkpoint --export")
    size = archive.stat().st_size
    add("checkpoint", res, archive_bytes=size, runtime_seconds=runtime_seconds(res, "checkpoint"))
    engine.remove(name)

    wrong = other_runtime(cell.runtime)
    res = engine.restore(archive, runtime=wrong)
    if not engine.refused(res):
        engine.remove(name)
        raise BenchError(
            f"{engine.name} did not refuse to restore a {cell.runtime} archive with {wrong} "
            f"(exit {res.returncode}): {res.stderr.strip()[-500:]}"
        )
    work_s, head_bytes = archive_work(archive) if engine.name == "amber" else (None, None)
    add("refuse", res, archive_bytes=size, archive_work_seconds=work_s, head_bytes_read=head_bytes)

    shown = engine.show(archive)
    if shown is not None:
        add("show", shown, archive_bytes=size)

    res = engine.restore(archive)
    if res.returncode != 0:
        log(f"    {engine.name} restore --import failed (exit {res.returncode}): {res.stderr.strip()[-800:]}")
        engine.remove(name)
        raise BenchError(f"{engine.name} restore --import of {archive.name} failed")
    add("restore", res, archive_bytes=size, runtime_seconds=runtime_seconds(res, "restore"))
    verify_restored(engine, name, before)
    return True


def repeats_for(cell: Cell, args: argparse.Namespace) -> int:
    """runc at 1 GiB and more gets --big-runc-repeat repetitions: the run must stay under 10 minutes."""
    if cell.runtime == "runc" and cell.mib >= 1024:
        return max(1, min(int(args.repeat), int(args.big_runc_repeat)))
    return max(1, int(args.repeat))


def over_budget(elapsed: float, cell: Cell, rest: list[Cell], rep_times: dict[int, list[float]], budget: float) -> bool:
    """Would one more repetition of `cell`, then one of every remaining cell, overrun the budget?"""

    def estimate(mib: int) -> float:
        if mib in rep_times:
            return statistics.mean(rep_times[mib])
        return GUESS_FIXED_S + GUESS_S_PER_MIB * mib  # not measured yet: what this host kind takes

    return elapsed + estimate(cell.mib) + sum(estimate(c.mib) for c in rest) > budget
