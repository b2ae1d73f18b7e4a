#!/usr/bin/env python3
"""amber migrate's benchmark: two hosts on one machine (tests/peers/hosts.py: network namespaces,
sshd in B), a container holding N MiB of incompressible memory (bench/workload.c, ticking every
10 ms) moved from A to B by each of amber migrate's modes, beside podman's manual way
(checkpoint --export, copy over ssh, restore --import) in the same run.

    .venv/bin/python bench/migrate.py [--sizes 64,1024,4096] [--modes copy,page-server,lazy]
                                      [--runtimes crun,runc] [--repeat 3] [--big-repeat 1]
    .venv/bin/python bench/migrate.py --report [--readme]

Downtime is the largest gap in the workload's own tick record (/tmp/ticks, read from the
container's upper directory on B; its CLOCK_REALTIME field, since CRIU's restore hides the stop
from the monotonic clock); amber's own freeze-to-running figure is kept beside it. Total is the
command's wall time (podman: the three steps). Medians per cell; results in
bench/results/migrate.json, the Markdown table on stdout (bench/migrate_stats.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import migrate_stats as stats  # noqa: E402
from migrate_podman import HostPodman, manual_move  # noqa: E402
from run import build_rootfs, build_workload, read_counter, versions  # noqa: E402
from tests.conftest import Amber  # noqa: E402
from tests.peers.hosts import Host, namespaces, remote_amber, sshd  # noqa: E402
from tests.peers.tools import PeerError  # noqa: E402

from amber.errors import AmberError  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "migrate.json"
README = HERE.parent / "README.md"
BEGIN = "<!-- migrate-report:begin (bench/migrate.py --report --readme writes this part) -->"
END = "<!-- migrate-report:end -->"
SECTION = "## Speed"
IMAGE = "localhost/amber-bench:latest"
TICK_MS = 10
NET = 250  # hosts on 10.250.250.0/24; amber's network 10.251.250.0/24, podman's 10.252.250.0/24
READY_TIMEOUT = 600.0
SETTLE_TIMEOUT = 120.0
NAME = "w"
PIPE_MAX = Path("/proc/sys/fs/pipe-max-size")
LAZY_PIPE_MIN = 4194304  # CRIU's lazy page server resizes a pipe to about 3.3 MB


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark amber migrate's modes against podman's manual way.")
    p.add_argument("--sizes", default="64,1024,4096", help="MiB of incompressible memory, comma-separated")
    p.add_argument("--modes", default=",".join(stats.MODES), help=f"of {', '.join(stats.MODES)}")
    p.add_argument("--runtimes", default="crun,runc")
    p.add_argument("--repeat", type=int, default=3, help="moves per cell (median)")
    p.add_argument("--big-repeat", type=int, default=1, help="moves per cell at >= 4096 MiB")
    p.add_argument(
        "--manual", default="podman", help="manual ways beside: podman, amber (checkpoint/copy/restore), none"
    )
    p.add_argument("--podman-compress", default="zstd", choices=("zstd", "gzip", "none"))
    p.add_argument("--podman-copy", default="ssh", choices=("ssh", "file"), help="how the archive reaches B")
    p.add_argument("--quick", action="store_true", help="64 MiB, one move each")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--report", action="store_true", help="measure nothing: print the table of --output")
    p.add_argument("--readme", action="store_true", help="with --report: also write it into README.md")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.big_repeat = "64", 1, 1
    bad = [m for m in args.modes.split(",") if m not in stats.MODES]
    manual = [] if args.manual == "none" else args.manual.split(",")
    if bad or any(m not in ("podman", "amber") for m in manual):
        p.error(f"unknown mode or manual way: {', '.join(bad) or args.manual}")
    args.ways = [m for m in args.modes.split(",") if m] + [f"{m}-manual" for m in manual]
    return args


def repeats(mib: int, args: argparse.Namespace) -> int:
    return int(args.big_repeat if mib >= 4096 else args.repeat)


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got is not None:
            return got
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not after {timeout:.0f} s")


def amber_upper(host: Host) -> Path | None:
    engine = host.amber.fresh_engine()
    c = engine.containers.store.find(NAME)
    return engine.containers.paths(c.id).upper if c is not None else None


class Bench:
    """The two hosts (amber and podman on each), ssh between them, and the samples taken."""

    def __init__(self, args: argparse.Namespace, work: Path, a: Host, b: Host, ssh: list[str]) -> None:
        self.args, self.work, self.a, self.b, self.ssh = args, work, a, b, ssh
        self.podman: tuple[HostPodman, HostPodman] | None = None
        self.samples: list[dict[str, Any]] = []
        self.unavailable: set[str] = set()

    def command(self, mib: int) -> list[str]:
        return ["/bin/workload", str(mib), "random", str(TICK_MS)]

    def amber_start(self, runtime: str, mib: int) -> int:
        self.a.amber_cmd(
            "run", "-d", "--name", NAME, "--network", "mig", "--runtime", runtime, IMAGE, *self.command(mib)
        )
        return self.ready(lambda: amber_upper(self.a))

    def ready(self, upper: Callable[[], Path | None]) -> int:
        """The counter once the workload has filled its memory and ticked a few times (so the
        ticker's regular period shows before the move)."""

        def check() -> int | None:
            u = upper()
            value = read_counter(u) if u is not None and (u / "tmp" / "ready").is_file() else None
            return value if value is not None and value >= 5 else None

        return int(wait_for("the workload got ready", check, READY_TIMEOUT))

    def settle(self, upper: Callable[[], Path | None], before: int, start: int, end: int) -> dict[str, Any]:
        """Waits for the moved workload to count on past `before` and tick after `end`; its figures."""

        def check() -> list[int] | None:
            u = upper()
            if u is None or (read_counter(u) or 0) <= before:
                return None
            ticks = stats.read_ticks(u / "tmp" / "ticks")
            return ticks if ticks and ticks[-1] > end else None

        ticks = wait_for("the moved workload ticked on B", check, SETTLE_TIMEOUT)
        gap = stats.downtime(ticks, start, end)
        if gap is None:
            raise RuntimeError("the tick record has no tick while the move ran")
        period = stats.tick_period(ticks, start)
        return {"downtime_s": round(gap, 4), "tick_median_ms": None if period is None else round(period * 1e3, 2)}

    def migrate(self, mode: str, runtime: str, mib: int) -> dict[str, Any]:
        before = self.amber_start(runtime, mib)
        start = time.time_ns()
        res = self.a.amber_cmd(
            "migrate", NAME, f"ssh://root@{self.b.address}", "--mode", mode, "--remote-amber", remote_amber(self.b),
            *self.ssh, check=False, timeout=1800,
        )  # fmt: skip
        end = time.time_ns()
        if res.returncode != 0:
            if stats.unavailable(res.stderr):
                self.unavailable.add(mode)
                return {"error": "mode not available", "unavailable": True}
            return {"error": " / ".join(res.stderr.strip().splitlines()[-2:])}
        got = self.settle(lambda: amber_upper(self.b), before, start, end)
        return {**got, "frozen_s": stats.frozen_from_report(res.stderr), "total_s": round((end - start) / 1e9, 4)}

    def amber_manual(self, runtime: str, mib: int) -> dict[str, Any]:
        """amber checkpoint --export (none), file copy, restore --import: amber without migrate."""
        before = self.amber_start(runtime, mib)
        archive, landed = self.work / "w.tar", self.work / "w-copy.tar"
        start = time.time_ns()
        self.a.amber_cmd("checkpoint", "--export", str(archive), "--compress", "none", NAME, timeout=1800)
        shutil.copyfile(archive, landed)
        self.b.amber_cmd("restore", "--import", str(landed), timeout=1800)
        end = time.time_ns()
        archive.unlink()
        landed.unlink()
        got = self.settle(lambda: amber_upper(self.b), before, start, end)
        return {**got, "total_s": round((end - start) / 1e9, 4)}

    def podman_manual(self, runtime: str, mib: int) -> dict[str, Any]:
        if self.podman is None:
            why = (
                "podman is not installed (bench/install-podman.sh)"
                if not shutil.which("podman")
                else "podman failed its setup"
            )
            return {"error": why, "unavailable": True}
        pa, pb = self.podman
        pa.start(NAME, runtime, IMAGE, self.command(mib))
        before = self.ready(lambda: pa.upper(NAME))
        dest = f"root@{self.b.address}"
        start, end = manual_move(
            pa, pb, NAME, self.args.podman_compress, self.args.podman_copy, (self.a.ns, self.ssh_plain(), dest)
        )
        got = self.settle(lambda: pb.upper(NAME), before, start, end)
        return {**got, "total_s": round((end - start) / 1e9, 4)}

    def ssh_plain(self) -> list[str]:
        """amber migrate's --identity/--ssh-option as ssh's own -i/-o."""
        return ["-i" if a == "--identity" else "-o" if a == "--ssh-option" else a for a in self.ssh]

    def clean(self) -> None:
        for host in (self.a, self.b):
            host.amber_cmd("rm", "-f", NAME, check=False, timeout=300)
        for p in self.podman or ():
            p.remove(NAME)

    def move(self, way: str, runtime: str, mib: int, rep: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"runtime": runtime, "mib": mib, "way": way, "rep": rep}
        if way in self.unavailable:
            return {**sample, "error": "mode not available", "unavailable": True}
        try:
            if way == "podman-manual":
                sample.update(self.podman_manual(runtime, mib))
            elif way == "amber-manual":
                sample.update(self.amber_manual(runtime, mib))
            else:
                sample.update(self.migrate(way, runtime, mib))
        except (AmberError, PeerError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            # one failed move is recorded; the others still run
            sample["error"] = f"{type(exc).__name__}: {str(exc).strip()[-400:]}"
        finally:
            self.clean()
        return sample

    def run(self) -> None:
        for runtime in self.args.runtimes.split(","):
            for mib in [int(s) for s in self.args.sizes.split(",")]:
                for rep in range(repeats(mib, self.args)):
                    for way in self.args.ways:
                        self.samples.append(self.move(way, runtime, mib, rep))
                        print(json.dumps(self.samples[-1]), file=sys.stderr, flush=True)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def hosts(work: Path, rootfs: Path, with_podman: bool) -> Iterator[tuple[Host, Host, list[HostPodman]]]:
    """Hosts A and B with amber's image and network "mig" on each (and podman's, with its network
    "migp"); everything removed afterwards, also on SIGTERM."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    with namespaces(NET) as names:
        made = [
            Host(names[r], f"10.250.{NET}.{i}", Amber(work / f"{r}-root", work / f"{r}-run"))
            for r, i in (("a", 1), ("b", 2))
        ]
        podmans: list[HostPodman] = []
        try:
            for host in made:
                host.amber.engine.images.import_image(rootfs, IMAGE)
                host.amber_cmd("network", "create", "--subnet", f"10.251.{NET}.0/24", "mig")
                if with_podman:
                    podmans.append(HostPodman(work / f"podman-{host.ns}", host.ns))
            try:
                for p in podmans:
                    p.setup(rootfs, IMAGE, f"10.252.{NET}.0/24")
            except PeerError as exc:  # amber's cells still run; podman's say why they did not
                print(f"podman cannot run here, measuring amber only: {exc}", file=sys.stderr)
                for p in podmans:
                    p.close()
                podmans.clear()
            yield made[0], made[1], podmans
        finally:
            for p in podmans:
                p.close()
            for host in made:
                host.cleanup()


@contextmanager
def pipe_size_for_lazy(needed: bool) -> Iterator[None]:
    """fs.pipe-max-size raised to what lazy mode needs for the run (when lower), put back after."""
    old = int(PIPE_MAX.read_text()) if needed else LAZY_PIPE_MIN
    if old < LAZY_PIPE_MIN:
        PIPE_MAX.write_text(f"{LAZY_PIPE_MIN}\n")
    try:
        yield
    finally:
        if old < LAZY_PIPE_MIN:
            PIPE_MAX.write_text(f"{old}\n")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(args: argparse.Namespace) -> int:
    with_podman = "podman-manual" in args.ways and shutil.which("podman") is not None
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = loadavg()
    with tempfile.TemporaryDirectory(prefix="amber-bench-migrate-") as tmp:
        work = Path(tmp)
        rootfs = build_rootfs(work, build_workload(work))
        with pipe_size_for_lazy("lazy" in args.ways), hosts(work, rootfs, with_podman) as (a, b, podmans):
            with sshd(b, work / "ssh") as (key, known):
                ssh = ["--identity", str(key), "--ssh-option", f"UserKnownHostsFile={known}",
                       "--ssh-option", "StrictHostKeyChecking=yes"]  # fmt: skip
                bench = Bench(args, work, a, b, ssh)
                if podmans:
                    bench.podman = (podmans[0], podmans[1])
                bench.run()
    rows = stats.summarize(bench.samples)
    data = {
        "when": started,
        "command": ["bench/migrate.py", *sys.argv[1:]],
        "load": load,
        "load_end": loadavg(),
        "tick_ms": TICK_MS,
        "versions": versions(with_podman),
        "podman": {
            "compress": args.podman_compress,
            "copy": "over the ssh channel (ssh B 'cat > F')" if args.podman_copy == "ssh" else "as a file (cp)",
            "hosts": "podman runs in both hosts' network namespaces, each with its own store.",
        }
        if with_podman
        else None,
        "samples": bench.samples,
        "rows": rows,
        "targets": stats.targets(rows),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    print(stats.markdown(data))
    failed = [s for s in bench.samples if "error" in s and not s.get("unavailable")]
    return 1 if failed else 0


def report(args: argparse.Namespace) -> int:
    import report as bench_report  # bench/report.py: the README splice

    try:
        data = json.loads(args.output.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ValueError("no 'rows': not a bench/migrate.py result")
        body = stats.markdown(data)
        if args.readme:
            bench_report.splice_file(README, body, BEGIN, END, SECTION)
    except (OSError, ValueError, bench_report.ReportError) as exc:
        print(f"error: {args.output}: {exc}", file=sys.stderr)
        print("hint: run bench/migrate.py first (it writes that file)", file=sys.stderr)
        return 1
    print(body)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args)
    if os.geteuid() != 0:
        print("error: bench/migrate.py needs root (namespaces, CRIU)", file=sys.stderr)
        return 1
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
