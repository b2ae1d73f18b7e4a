#!/usr/bin/env python3
"""amber's checkpoint/restore benchmark, side by side with podman when podman is installed.

    .venv/bin/python bench/run.py [--quick] [--cells small,memory,rootfs,level] [--sizes 64,256,1024]

It runs these cells (bench/cells.py), each timed for amber and then for podman on the same workload:

  small   busybox (and busybox httpd) containers: run, exec, ps, inspect, checkpoint, restore,
          stop, rm, one command at a time
  memory  bench/workload.c holding N MiB of random or compressible data: checkpoint --export and
          restore --import (zstd, then none), the whole round trip, the refused restore with the
          other runtime, `archive show` / `checkpointctl show`, and the archive sizes
  rootfs  a container that first writes N MiB (default 2 GiB) of files: the same steps
  level   amber alone at each --compress-level (default 1,2,3): time and archive size

Each restore is verified: the restored counter must carry on above the value read before the
checkpoint. Wall times are medians over the repeats; the peak RSS is that of the amber (or podman)
process itself. Results go to bench/results/latest.json and the Markdown tables (bench/report.py)
on stdout; progress goes to stderr. Every container, image, mount and file the run makes is
removed at the end, also on Ctrl-C or failure. See bench/README.md for how to read the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import report
from cells import KINDS, RUNTIMES, SHAPES, SMALL_KINDS, Cell, Sample, cost_key, over_budget, plan, repeats_for, run_cell
from cells import read_counter as read_counter
from engines import AMBER, Amber, Engine, Podman
from harness import (
    HERE,
    MIB,
    REPO,
    BenchError,
    Interrupted,
    build_rootfs,
    build_workload,
    log,
    quiet,
    remove_tree,
    signals_ignored,
    signals_raise,
)
from summary import summarize, target_summary

__all__ = ["build_rootfs", "build_workload", "read_counter", "main"]  # bench/migrate.py imports these

RESULTS = HERE / "results" / "latest.json"
DEFAULT_BUDGET = 1200.0  # seconds: the full run takes about 20 minutes on 2 quiet cores


def versions(podman: bool) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        res = quiet(argv)
        return (res.stdout or res.stderr).strip().splitlines()[0] if res.returncode == 0 else "n/a"

    out = {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "criu": first_line(["criu", "--version"]),
        "crun": first_line(["crun", "--version"]),
        "runc": first_line(["runc", "--version"]),
        "conmon": first_line(["conmon", "--version"]),
        "cpus": str(os.cpu_count()),
    }
    with contextlib.suppress(ImportError):
        import amber

        out["amber"] = amber.__version__
    if podman:
        out["podman"] = first_line(["podman", "--version"])
        # checkpointctl has no --version: ask the package manager, when there is one.
        out["checkpointctl"] = first_line(["dpkg-query", "-W", "-f", "${Version}\n", "checkpointctl"])
    return out


# ===================================== main =====================================================
def print_report(result: Path, readme: Path | None) -> int:
    """`--report`: the README's table made from a result file; with a README, written into it."""
    try:
        body = report.write_readme(result, readme) if readme else report.table(report.load(result))
    except (report.ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(body)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark amber's checkpoint/restore against podman.")
    p.add_argument("--cells", default=",".join(SHAPES), help=f"cell shapes to run (default {','.join(SHAPES)})")
    p.add_argument("--sizes", default="64,256,1024", help="memory cells: MiB, comma separated (default 64,256,1024)")
    p.add_argument("--kinds", default=",".join(KINDS), help="memory cells: data kinds (random,compressible)")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="OCI runtimes: crun,runc")
    p.add_argument("--rootfs-sizes", default="2048", help="rootfs cells: MiB of files written (default 2048)")
    p.add_argument("--small", default=",".join(SMALL_KINDS), help="small containers: busybox,httpd")
    p.add_argument("--levels", default="1,2,3", help="level cells: zstd --compress-level values (default 1,2,3)")
    p.add_argument("--level-sizes", default="256,1024", help="level cells: MiB of compressible data (256,1024)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per measurement (default 3)")
    p.add_argument(
        "--big-runc-repeat", type=int, default=1, help="repetitions for runc memory cells >= 1024 MiB (default 1)"
    )
    p.add_argument(
        "--big-repeat", type=int, default=1, help="repetitions for rootfs and level cells >= 1024 MiB (default 1)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test, a few minutes: one repetition, memory 64, rootfs 128, levels at 64 MiB, busybox only",
    )
    p.add_argument("--no-podman", action="store_true", help="measure amber only")
    p.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help=f"seconds; repetitions are dropped to stay within it (default {DEFAULT_BUDGET:.0f})",
    )
    p.add_argument(
        "--workdir",
        default="/var/tmp/amber-bench",
        help="scratch directory on a disk with room for the archives (default /var/tmp/amber-bench)",
    )
    p.add_argument("--output", default=str(RESULTS), help=f"JSON result file (default {RESULTS})")
    p.add_argument("--report", action="store_true", help="measure nothing: print the Markdown table of --output")
    p.add_argument("--readme", action="store_true", help="with --report: also write the table into README.md")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.rootfs_sizes, args.level_sizes, args.small, args.repeat = "64", "128", "64", "busybox", 1
    return args


def preflight(work: Path, cells: list[Cell]) -> None:
    if os.geteuid() != 0:
        raise SystemExit("error: the benchmark runs containers and CRIU: run it as root")
    if not AMBER.is_file():
        raise SystemExit(f"error: {AMBER} is missing\nhint: run the README's setup (make demo) first")
    if not cells:
        raise SystemExit("error: no cells to run (see --cells, --sizes, --runtimes)")
    need = max(c.disk_bytes for c in cells) + 512 * MIB
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(
            f"error: {work} has {free / MIB:.0f} MiB free, the benchmark needs about "
            f"{need / MIB:.0f} MiB\nhint: give --workdir on a larger disk"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return print_report(Path(args.output), REPO / "README.md" if args.readme else None)
    return measure(args)


class Run:
    """What a run gathers: the samples, repetitions done, time per repetition, errors."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self.repeats: dict[str, int] = {}
        self.rep_times: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.problems: list[str] = []

    def cells(self, args: argparse.Namespace, cells: list[Cell], engines: list[Engine], work: Path) -> None:
        """Every cell, its repetitions cut by the budget; an engine's failure is recorded, not fatal."""
        for i, cell in enumerate(cells):
            wanted = repeats_for(cell, args)
            done = 0
            for rep in range(wanted):
                elapsed = time.monotonic() - self.started
                if done and over_budget(elapsed, cell, cells[i + 1 :], self.rep_times, args.budget):
                    log(f"  {cell.key}: stopping after {done} repetition(s) to stay within {args.budget:.0f} s")
                    break
                log(f"  {cell.key}: repetition {rep + 1}/{wanted}")
                rep_started = time.monotonic()
                for e in engines:
                    if e.name not in cell.engines:
                        continue
                    try:
                        run_cell(e, cell, rep, work, self.samples)
                    except BenchError as exc:
                        self.errors.append(f"{e.name} {cell.key} #{rep + 1}: {exc}")
                        log(f"    ERROR {self.errors[-1]}")
                self.rep_times.setdefault(cost_key(cell), []).append(time.monotonic() - rep_started)
                done += 1
            self.repeats[cell.key] = done


def measure(args: argparse.Namespace) -> int:
    """The benchmark itself: every cell, then the JSON and the tables."""
    cells = plan(args)
    podman_bin = None if args.no_podman else shutil.which("podman")
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    preflight(base, cells)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    amber = Amber(work)
    engines: list[Engine] = [amber]
    if podman_bin:
        engines.append(Podman(work, podman_bin))
    else:
        log("podman is not installed: measuring amber only (bench/install-podman.sh installs it)")
    run = Run()
    try:
        with signals_raise():
            rootfs = build_rootfs(work, build_workload(work))
            for e in engines:
                e.setup(rootfs)
            # A first amber command fills the bytecode cache, as on any installed system.
            amber.run("ps", "-a")
            run.cells(args, cells, engines, work)
    except (KeyboardInterrupt, Interrupted) as exc:
        run.errors.append(f"interrupted ({exc or 'SIGINT'}): results are partial")
        log(f"interrupted: cleaning up ({exc or 'SIGINT'})")
    except BenchError as exc:
        run.errors.append(str(exc))
        log(f"error: {exc}")
    finally:
        with signals_ignored():
            for e in engines:
                try:
                    run.problems += e.teardown()
                except (BenchError, OSError) as exc:
                    run.problems.append(f"{e.name} teardown: {exc}")
            run.problems += remove_tree(work)
            with contextlib.suppress(OSError):
                base.rmdir()  # only when empty
    for p in run.problems:
        log(f"cleanup: {p}")
    return write_results(args, cells, run, bool(podman_bin))


def write_results(args: argparse.Namespace, cells: list[Cell], run: Run, podman: bool) -> int:
    """The JSON result file, then the tables on stdout. Exit 1 when anything failed."""
    total = time.monotonic() - run.started
    rows = summarize(run.samples)
    result: dict[str, Any] = {
        "schema_version": 2,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": [sys.executable, *sys.argv],
        "config": {
            "cells": sorted({c.shape for c in cells}),
            "sizes": sorted({c.mib for c in cells if c.shape == "memory"}),
            "rootfs_sizes": sorted({c.mib for c in cells if c.shape == "rootfs"}),
            "level_sizes": sorted({c.mib for c in cells if c.shape == "level"}),
            "levels": sorted({lv for c in cells for lv in c.levels}),
            "small": sorted({c.kind for c in cells if c.shape == "small"}),
            "kinds": sorted({c.kind for c in cells if c.shape == "memory"}),
            "runtimes": sorted({c.runtime for c in cells}),
            "repeat": args.repeat,
            "repeats_done": run.repeats,
            "budget_s": args.budget,
            "podman": podman,
        },
        "versions": versions(podman),
        "total_seconds": total,
        "rows": rows,
        "targets": target_summary(rows),
        "samples": [dict(dataclasses.asdict(s), cell=s.cell.key) for s in run.samples],
        "errors": run.errors,
        "cleanup_problems": run.problems,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(report.table(result))
    print()
    print(f"{len(run.samples)} measurements in {total:.0f} s; results in {out}")
    for line in run.errors:
        print(f"error: {line}")
    return 1 if run.errors or run.problems else 0


if __name__ == "__main__":
    sys.exit(main())
