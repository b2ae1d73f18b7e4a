"""The measurement cells, each run on one engine at a time: what the container does, the commands
timed on it, its repetitions and the time budget. Shapes:

  memory  N MiB held by bench/workload.c; checkpoint --export / restore --import (zstd, none),
          the wrong-runtime refusal and `archive show`
  rootfs  the container first writes N MiB of random files into its root filesystem, then the same
  level   amber only: checkpoint --export / restore --import at each --compress-level
  small   a busybox shell (or busybox httpd) container: run, exec, ps, inspect, checkpoint,
          restore, stop, rm, each timed as a user runs it
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from engines import SMALL_OPS, Engine
from harness import MIB, BenchError, Timed, log

SHAPES = ("small", "memory", "rootfs", "level")  # run in this order
KINDS = ("random", "compressible")
SMALL_KINDS = ("busybox", "httpd")
RUNTIMES = ("crun", "runc")
READY_TIMEOUT = 120.0
READY_S_PER_MIB = 0.1  # rootfs cells write their files before they are ready
VERIFY_TIMEOUT = 10.0
# One repetition of one cell, all engines, before it is measured (2 cores, 1 GiB: about 45 s).
GUESS_FIXED_S = {"memory": 8.0, "rootfs": 10.0, "level": 5.0, "small": 12.0}
GUESS_S_PER_MIB = {"memory": 0.04, "rootfs": 0.06, "level": 0.03, "small": 0.0}
ROOTFS_CHUNK_MIB = 64
# A busybox shell that counts like the workload: /tmp/ready, then /tmp/counter every 100 ms.
COUNTER_LOOP = "i=0; : > /tmp/ready; while :; do i=$((i+1)); echo $i > /tmp/counter; /bin/sleep 0.1; done"


@dataclasses.dataclass(frozen=True)
class Cell:
    mib: int
    kind: str
    runtime: str
    shape: str = "memory"
    levels: tuple[int, ...] = ()  # level cells: the --compress-level values

    @property
    def key(self) -> str:
        if self.shape == "small":
            return f"small/{self.kind}/{self.runtime}"
        base = f"{self.mib}MiB/{self.kind}/{self.runtime}"
        return base if self.shape == "memory" else f"{self.shape}/{base}"

    @property
    def engines(self) -> tuple[str, ...]:
        return ("amber",) if self.shape == "level" else ("amber", "podman")

    @property
    def compressions(self) -> tuple[str, ...]:
        """The archive kinds checkpointed one after the other, each from the container the last restored."""
        if self.shape == "level":
            return tuple(f"zstd{level}" for level in self.levels)
        return ("zstd", "none")

    @property
    def disk_bytes(self) -> int:
        """Scratch space one repetition needs: the archives, CRIU images, each engine's copy."""
        return (6 if self.shape == "rootfs" else 5) * self.mib * MIB

    def argv(self) -> list[str]:
        """What the container runs."""
        if self.shape == "small":
            httpd = "/bin/busybox httpd -p 127.0.0.1:8080 -h /tmp && " if self.kind == "httpd" else ""
            return ["/bin/sh", "-c", httpd + COUNTER_LOOP]
        if self.shape == "rootfs":
            chunk = min(ROOTFS_CHUNK_MIB, self.mib)
            files = max(1, self.mib // chunk)
            script = (
                f"/bin/busybox mkdir -p /data && i=0 && while [ $i -lt {files} ]; do "
                f"/bin/busybox dd if=/dev/urandom of=/data/f$i bs={MIB} count={chunk} 2>/dev/null || exit 1; "
                "i=$((i+1)); done && exec /bin/workload 16 random"
            )
            return ["/bin/sh", "-c", script]
        return ["/bin/workload", str(self.mib), self.kind]


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


def _ints(text: str) -> list[int]:
    return sorted({int(s) for s in text.split(",") if s})


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    for n in names:
        if n not in allowed:
            raise SystemExit(f"error: unknown {what} {n!r} ({', '.join(allowed)})")
    return names


def plan(args: argparse.Namespace) -> list[Cell]:
    """Every cell of the run, in run order: small, memory, rootfs, level; small sizes first, then
    crun before runc, so that if the budget cuts repetitions, it cuts the big runc ones.
    rootfs and level cells run on the first runtime only."""
    shapes = _names(args.cells, SHAPES, "cell shape")
    kinds = _names(args.kinds, KINDS, "data kind")
    runtimes = _names(args.runtimes, RUNTIMES, "runtime")
    small = _names(args.small, SMALL_KINDS, "small container")
    levels = tuple(_ints(args.levels))
    cells: list[Cell] = []
    for shape in SHAPES:
        if shape not in shapes or not runtimes:
            continue
        if shape == "small":
            cells += [Cell(0, k, r, "small") for k in small for r in runtimes]
        elif shape == "memory":
            cells += [Cell(m, k, r) for m in _ints(args.sizes) for r in runtimes for k in kinds]
        elif shape == "rootfs":
            cells += [Cell(m, "random", runtimes[0], "rootfs") for m in _ints(args.rootfs_sizes)]
        elif levels:
            cells += [Cell(m, "compressible", runtimes[0], "level", levels) for m in _ints(args.level_sizes)]
    return cells


def other_runtime(runtime: str) -> str:
    return "runc" if runtime == "crun" else "crun"


def read_counter(upper: Path) -> int | None:
    try:
        return int((upper / "tmp" / "counter").read_text().strip() or "0")
    except (OSError, ValueError):
        return None


def wait_ready(engine: Engine, name: str, cell: Cell) -> Path:
    upper = engine.upper(name)
    timeout = READY_TIMEOUT + (READY_S_PER_MIB * cell.mib if cell.shape == "rootfs" else 0.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (upper / "tmp" / "ready").is_file() and read_counter(upper) is not None:
            return upper
        time.sleep(0.05)
    raise BenchError(f"{engine.name}: the workload in {name} did not get ready in {timeout:.0f} s")


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


def _logged(engine: Engine, cell: Cell, op: str, res: Timed, samples: list[Sample], **extra: Any) -> None:
    samples.append(Sample(engine.name, cell, op, res.seconds, res.rss_kib, res.rss_tree_kib, **extra))
    log(f"    {engine.name:6} {cell.key:28} {op:16} {res.seconds:7.3f} s  rss {res.rss_kib / 1024:6.1f} MiB")


def run_cell(engine: Engine, cell: Cell, rep: int, work: Path, samples: list[Sample]) -> None:
    """One repetition of `cell` on `engine`; the container is removed at the end, also on failure."""
    if cell.shape == "small":
        run_small(engine, cell, rep, samples)
        return
    name = f"bench-{cell.shape[0]}{cell.mib}-{cell.kind[0]}-{cell.runtime}-{rep}"
    engine.start(name, cell.runtime, cell.argv())
    try:
        upper = wait_ready(engine, name, cell)
        for compress in cell.compressions:
            before = read_counter(upper) or 0
            archive = work / f"{engine.name}-{name}.tar{'.zst' if compress.startswith('zstd') else ''}"
            try:
                _one_archive(engine, cell, name, compress, archive, before, samples)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    archive.unlink()
            upper = engine.upper(name)
    finally:
        engine.remove(name)


def run_small(engine: Engine, cell: Cell, rep: int, samples: list[Sample]) -> None:
    """Each command a user types on a small container, timed whole; the restore must count on."""
    name = f"bench-small-{cell.kind}-{cell.runtime}-{rep}"
    _logged(engine, cell, "run", engine.start(name, cell.runtime, cell.argv()), samples)
    try:
        upper = wait_ready(engine, name, cell)
        before = 0
        for op in SMALL_OPS:
            if op == "checkpoint":
                before = read_counter(upper) or 0
            _logged(engine, cell, op, engine.small(op, name).check(f"{engine.name} {op}"), samples)
            if op == "restore":
                verify_restored(engine, name, before)
    finally:
        engine.remove(name)


def _one_archive(
    engine: Engine, cell: Cell, name: str, compress: str, archive: Path, before: int, samples: list[Sample]
) -> None:
    """checkpoint --export, [refused restore, show,] restore --import: the restored container counts on."""
    algo, level = ("zstd", int(compress[4:])) if compress[4:].isdigit() else (compress, None)
    ck = engine.checkpoint(name, archive, algo, level).check(f"{engine.name} checkpoint --export")
    size = archive.stat().st_size
    _logged(engine, cell, f"checkpoint_{compress}", ck, samples, archive_bytes=size,
            runtime_seconds=runtime_seconds(ck, "checkpoint"))  # fmt: skip
    engine.remove(name)

    if cell.shape != "level":
        wrong = other_runtime(cell.runtime)
        res = engine.restore(archive, runtime=wrong)
        if not engine.refused(res):
            engine.remove(name)
            raise BenchError(
                f"{engine.name} did not refuse to restore a {cell.runtime} archive with {wrong} "
                f"(exit {res.returncode}): {res.stderr.strip()[-500:]}"
            )
        work_s, head_bytes = archive_work(archive) if engine.name == "amber" else (None, None)
        _logged(engine, cell, f"refuse_{compress}", res, samples, archive_bytes=size,
                archive_work_seconds=work_s, head_bytes_read=head_bytes)  # fmt: skip
        shown = engine.show(archive)
        if shown is not None:
            _logged(engine, cell, f"show_{compress}", shown, samples, archive_bytes=size)

    res = engine.restore(archive)
    if res.returncode != 0:
        log(f"    {engine.name} restore --import failed (exit {res.returncode}): {res.stderr.strip()[-800:]}")
        engine.remove(name)
        raise BenchError(f"{engine.name} restore --import of {archive.name} failed")
    _logged(engine, cell, f"restore_{compress}", res, samples, archive_bytes=size,
            runtime_seconds=runtime_seconds(res, "restore"))  # fmt: skip
    verify_restored(engine, name, before)
    # The whole round trip, as a user moving a container sees it: checkpoint+export, import+restore.
    samples.append(
        Sample(engine.name, cell, f"roundtrip_{compress}", ck.seconds + res.seconds,
               max(ck.rss_kib, res.rss_kib), max(ck.rss_tree_kib, res.rss_tree_kib), archive_bytes=size)
    )  # fmt: skip


def repeats_for(cell: Cell, args: argparse.Namespace) -> int:
    """runc at 1 GiB and more gets --big-runc-repeat repetitions, rootfs and level cells of 1 GiB
    and more --big-repeat: the whole run must stay within the budget."""
    wanted = max(1, int(args.repeat))
    if cell.shape == "memory" and cell.runtime == "runc" and cell.mib >= 1024:
        return max(1, min(wanted, int(args.big_runc_repeat)))
    if cell.shape in ("rootfs", "level") and cell.mib >= 1024:
        return max(1, min(wanted, int(args.big_repeat)))
    return wanted


def cost_key(cell: Cell) -> str:
    """Cells that take about as long as each other per repetition."""
    return f"{cell.shape}/{cell.mib}"


def over_budget(elapsed: float, cell: Cell, rest: list[Cell], rep_times: dict[str, list[float]], budget: float) -> bool:
    """Would one more repetition of `cell`, then one of every remaining cell, overrun the budget?"""

    def estimate(c: Cell) -> float:
        key = cost_key(c)
        if key in rep_times:
            return statistics.mean(rep_times[key])
        # not measured yet: what this host kind takes
        return GUESS_FIXED_S[c.shape] + GUESS_S_PER_MIB[c.shape] * c.mib * max(1, len(c.levels))

    return elapsed + estimate(cell) + sum(estimate(c) for c in rest) > budget
