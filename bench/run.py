#!/usr/bin/env python3
"""amber's checkpoint/restore benchmark, side by side with podman when podman is installed.

    .venv/bin/python bench/run.py [--sizes 64,1024] [--repeat 3] [--runtimes crun,runc] [--quick]

For each size x data kind x runtime it starts a container running bench/workload.c (N MiB of
random or compressible data, then a counter), and times, for amber and for podman:

  checkpoint --export (zstd)   restore --import (zstd)   refused restore with the other runtime
  checkpoint --export (none)   restore --import (none)   `archive show` / `checkpointctl show`

Each restore is verified: the restored counter must carry on above the value read before the
checkpoint. Wall times are medians over the repeats; the peak RSS is that of the amber (or podman)
process itself. Results go to bench/results/latest.json and a Markdown table on stdout; progress
goes to stderr. Every container, image, mount and file the run makes is removed at the end, also
on Ctrl-C or failure. See bench/README.md for how to read the table.
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

from cells import Cell, Sample, over_budget, read_counter, repeats_for, run_cell
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
from summary import markdown, summarize, target_summary

__all__ = ["build_rootfs", "build_workload", "read_counter", "main"]  # bench/migrate.py imports these

RESULTS = HERE / "results" / "latest.json"
KINDS = ("random", "compressible")
RUNTIMES = ("crun", "runc")
DEFAULT_BUDGET = 540.0  # seconds: the issue asks for < 10 minutes in all


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
    import report  # bench/report.py, beside this file

    try:
        body = report.write_readme(result, readme) if readme else report.table(report.load(result))
    except (report.ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(body)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark amber's checkpoint/restore against podman.")
    p.add_argument("--sizes", default="64,1024", help="memory sizes in MiB, comma separated (default 64,1024)")
    p.add_argument("--kinds", default=",".join(KINDS), help="data kinds: random,compressible")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="OCI runtimes: crun,runc")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per measurement (default 3)")
    p.add_argument(
        "--big-runc-repeat",
        type=int,
        default=1,
        help="repetitions for runc at >= 1024 MiB (default 1: the whole run stays under 10 minutes)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 64 MiB only, one repetition")
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
        args.sizes, args.repeat = "64", 1
    return args


def plan(args: argparse.Namespace) -> list[Cell]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    runtimes = [r for r in args.runtimes.split(",") if r]
    for k in kinds:
        if k not in KINDS:
            raise SystemExit(f"error: unknown data kind {k!r} (random, compressible)")
    for r in runtimes:
        if r not in RUNTIMES:
            raise SystemExit(f"error: unknown runtime {r!r} (crun, runc)")
    # Small sizes first, then crun before runc: if the budget cuts repetitions, it cuts runc's.
    return [Cell(m, k, r) for m in sorted(sizes) for r in runtimes for k in kinds]


def preflight(work: Path, cells: list[Cell]) -> None:
    if os.geteuid() != 0:
        raise SystemExit("error: the benchmark runs containers and CRIU: run it as root")
    if not AMBER.is_file():
        raise SystemExit(f"error: {AMBER} is missing\nhint: run the README's setup (make demo) first")
    biggest = max(c.mib for c in cells)
    need = 5 * biggest * MIB + 512 * MIB  # two archives, CRIU images, each engine's work copy
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
    started = time.monotonic()
    samples: list[Sample] = []
    repeats: dict[str, int] = {}
    rep_times: dict[int, list[float]] = {}
    errors: list[str] = []
    problems: list[str] = []
    try:
        with signals_raise():
            workload = build_workload(work)
            rootfs = build_rootfs(work, workload)
            for e in engines:
                e.setup(rootfs)
            # A first amber command fills the bytecode cache, as on any installed system.
            amber.run("ps", "-a")
            for i, cell in enumerate(cells):
                wanted = repeats_for(cell, args)
                done = 0
                for rep in range(wanted):
                    if done and over_budget(time.monotonic() - started, cell, cells[i + 1 :], rep_times, args.budget):
                        log(f"  {cell.key}: stopping after {done} repetition(s) to stay within {args.budget:.0f} s")
                        break
                    log(f"  {cell.key}: repetition {rep + 1}/{wanted}")
                    rep_started = time.monotonic()
                    for e in engines:
                        try:
                            run_cell(e, cell, rep, work, samples)
                        except BenchError as exc:
                            errors.append(f"{e.name} {cell.key} #{rep + 1}: {exc}")
                            log(f"    ERROR {errors[-1]}")
                    rep_times.setdefault(cell.mib, []).append(time.monotonic() - rep_started)
                    done += 1
                repeats[cell.key] = done
    except (KeyboardInterrupt, Interrupted) as exc:
        errors.append(f"interrupted ({exc or 'SIGINT'}): results are partial")
        log(f"interrupted: cleaning up ({exc or 'SIGINT'})")
    except BenchError as exc:
        errors.append(str(exc))
        log(f"error: {exc}")
    finally:
        with signals_ignored():
            for e in engines:
                try:
                    problems += e.teardown()
                except (BenchError, OSError) as exc:
                    problems.append(f"{e.name} teardown: {exc}")
            problems += remove_tree(work)
            with contextlib.suppress(OSError):
                base.rmdir()  # only when empty
    for p in problems:
        log(f"cleanup: {p}")
    total = time.monotonic() - started
    rows = summarize(samples)
    table = markdown(rows)
    summary_table, summary = target_summary(rows)
    result = {
        "schema_version": 1,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": [sys.executable, *sys.argv],
        "config": {
            "sizes": sorted({c.mib for c in cells}),
            "kinds": sorted({c.kind for c in cells}),
            "runtimes": sorted({c.runtime for c in cells}),
            "repeat": args.repeat,
            "repeats_done": repeats,
            "budget_s": args.budget,
            "podman": bool(podman_bin),
        },
        "versions": versions(bool(podman_bin)),
        "total_seconds": total,
        "rows": rows,
        "targets": summary,
        "samples": [dict(dataclasses.asdict(s), cell=s.cell.key) for s in samples],
        "errors": errors,
        "cleanup_problems": problems,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(table)
    print()
    print(summary_table)
    print()
    print(f"{len(samples)} measurements in {total:.0f} s; results in {out}")
    for line in errors:
        print(f"error: {line}")
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main())
