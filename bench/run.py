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
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
AMBER = REPO / ".venv" / "bin" / "amber"
RESULTS = HERE / "results" / "latest.json"
IMAGE = "localhost/amber-bench:latest"
KINDS = ("random", "compressible")
RUNTIMES = ("crun", "runc")
MIB = 1 << 20
READY_TIMEOUT = 120.0
VERIFY_TIMEOUT = 10.0
DEFAULT_BUDGET = 540.0  # seconds: the issue asks for < 10 minutes in all
# One repetition of one cell, both engines, before it is measured (2 cores, 1 GiB: about 45 s).
GUESS_FIXED_S = 8.0
GUESS_S_PER_MIB = 0.04

# The operations, in table order: key -> label.
OPS = {
    "checkpoint_zstd": "checkpoint --export (zstd)",
    "restore_zstd": "restore --import (zstd)",
    "checkpoint_none": "checkpoint --export (none)",
    "restore_none": "restore --import (none)",
    "refuse_zstd": "refused restore, wrong --runtime (zstd)",
    "refuse_none": "refused restore, wrong --runtime (none)",
    "show_zstd": "archive show (zstd)",
    "show_none": "archive show (none)",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ===================================== measuring one command ====================================
@dataclasses.dataclass(frozen=True)
class Timed:
    """One command: wall time, exit code, output, and peak resident set sizes in KiB.

    rss_kib is the process's own high-water mark (VmHWM, sampled from /proc until it exits);
    rss_tree_kib is wait4's ru_maxrss, which also covers the children it waited for (CRIU, the
    runtime) and, through the exec, the harness's own size: an upper bound only.
    """

    argv: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    rss_kib: int
    rss_tree_kib: int

    def check(self, what: str) -> Timed:
        if self.returncode != 0:
            raise BenchError(
                f"{what} failed (exit {self.returncode}): {' '.join(self.argv)}\n" + self.stderr.strip()[-2000:]
            )
        return self


class BenchError(Exception):
    pass


def _vm_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def timed(argv: Sequence[str], env: dict[str, str] | None = None, interval: float = 0.01) -> Timed:
    """Run argv (no shell), time it, and measure its peak RSS."""
    argv = [os.fspath(a) for a in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                hwm = _vm_hwm(proc.pid)
                if hwm is not None:
                    peak = max(peak, hwm)
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise
        finally:
            done.set()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
        sampler.join()
        out.seek(0)
        err.seek(0)
        return Timed(
            argv,
            seconds,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peak,
            int(usage.ru_maxrss),
        )


def quiet(argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, check=False
    )


# ===================================== the workload image =======================================
def build_workload(tmp: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc is not installed: it builds bench/workload.c (apt-get install gcc libc6-dev)")
    binary = tmp / "workload"
    res = quiet([gcc, "-O2", "-static", "-Wall", "-o", str(binary), str(HERE / "workload.c")])
    if res.returncode != 0:
        raise BenchError(
            f"gcc -static could not build bench/workload.c:\n{res.stderr}"
            "\n(hint: apt-get install libc6-dev for the static libc)"
        )
    return binary


def static_busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file() and b"ld-linux" not in path.read_bytes()[:65536]:
            return path
    raise BenchError("no static busybox on this host (apt-get install busybox-static; setup-host.sh does)")


def build_rootfs(tmp: Path, workload: Path) -> Path:
    """A rootfs tarball: static busybox, /bin/sh, /bin/workload and an empty /tmp."""
    dest = tmp / "rootfs.tar"
    with tarfile.open(dest, "w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for src, name in ((static_busybox(), "bin/busybox"), (workload, "bin/workload")):
            info = tar.gettarinfo(str(src), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755
            with src.open("rb") as f:
                tar.addfile(info, f)
        for applet in ("sh", "cat", "sleep", "ls"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return dest


# ===================================== the engines ==============================================
class Engine(Protocol):
    name: str

    def setup(self, rootfs: Path) -> None: ...
    def start(self, name: str, runtime: str, mib: int, kind: str) -> None: ...
    def upper(self, name: str) -> Path: ...
    def checkpoint(self, name: str, dest: Path, compress: str) -> Timed: ...
    def restore(self, archive: Path, runtime: str | None = None) -> Timed: ...
    def refused(self, res: Timed) -> bool: ...
    def show(self, archive: Path) -> Timed | None: ...
    def remove(self, name: str) -> None: ...
    def teardown(self) -> list[str]: ...


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(root):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(root: Path) -> list[str]:
    """Unmount what is left under root, then delete it. Returns problems, if any."""
    problems = []
    for point in _mounts_under(root):
        res = quiet(["umount", point])
        if res.returncode != 0:
            res = quiet(["umount", "-l", point])
            problems.append(f"{point} was still mounted" + ("" if res.returncode == 0 else " (umount failed)"))
    if _mounts_under(root):
        problems.append(f"mounts remain under {root}: not deleting it")
        return problems
    shutil.rmtree(root, ignore_errors=True)
    return problems


class Amber:
    name = "amber"

    def __init__(self, work: Path) -> None:
        self.root = work / "amber-root"
        self.runroot = work / "amber-run"
        self.base = [str(AMBER), "--root", str(self.root), "--runroot", str(self.runroot)]
        # Measure amber as installed: bytecode cached (in a private prefix, never in src/).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        self.env.pop("AMBER_ROOT", None)
        self.env.pop("AMBER_RUNROOT", None)
        self.names: set[str] = set()
        self.has_show: bool | None = None

    def run(self, *args: str) -> Timed:
        return timed([*self.base, *args], env=self.env)

    def setup(self, rootfs: Path) -> None:
        self.run("image", "import", str(rootfs), IMAGE).check("amber image import")

    def start(self, name: str, runtime: str, mib: int, kind: str) -> None:
        self.names.add(name)
        self.run("run", "-d", "--name", name, "--runtime", runtime, IMAGE, "/bin/workload", str(mib), kind).check(
            "amber run"
        )

    def inspect(self, name: str) -> dict[str, Any]:
        res = self.run("inspect", name).check("amber inspect")
        data = json.loads(res.stdout)
        return dict(data[0] if isinstance(data, list) else data)

    def upper(self, name: str) -> Path:
        return Path(self.inspect(name)["paths"]["upper"])

    def checkpoint(self, name: str, dest: Path, compress: str) -> Timed:
        return self.run("checkpoint", "--print-stats", "--export", str(dest), "--compress", compress, name)

    def restore(self, archive: Path, runtime: str | None = None) -> Timed:
        extra = [] if runtime is None else ["--runtime", runtime]
        return self.run("restore", "--print-stats", "--import", str(archive), *extra)

    def refused(self, res: Timed) -> bool:
        return res.returncode == 7

    def show(self, archive: Path) -> Timed | None:
        if self.has_show is False:
            return None
        res = self.run("archive", "show", str(archive))
        if res.returncode == 2 and "invalid choice" in res.stderr:
            self.has_show = False  # the subcommand has not landed yet
            return None
        self.has_show = True
        return res.check("amber archive show")

    def remove(self, name: str) -> None:
        res = self.run("rm", "-f", name)
        if res.returncode not in (0, 3):
            raise BenchError(f"amber rm -f {name} failed: {res.stderr.strip()}")

    def teardown(self) -> list[str]:
        problems = []
        res = self.run("ps", "-a", "-q")
        ids = res.stdout.split() if res.returncode == 0 else sorted(self.names)
        for ref in ids:
            rm = self.run("rm", "-f", ref)
            if rm.returncode not in (0, 3):
                problems.append(f"amber rm -f {ref}: {rm.stderr.strip()}")
        self.run("rmi", IMAGE)
        for d in (self.root, self.runroot):
            problems += remove_tree(d)
        return problems


class Podman:
    name = "podman"

    def __init__(self, work: Path, podman: str) -> None:
        self.top = work / "podman"
        self.base = [podman, "--root", str(self.top / "root"), "--runroot", str(self.top / "run"),
                     "--tmpdir", str(self.top / "tmp"), "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file"]  # fmt: skip
        self.env = dict(os.environ, PODMAN_IGNORE_CGROUPSV1_WARNING="1")
        self.checkpointctl = shutil.which("checkpointctl")

    def run(self, *args: str) -> Timed:
        return timed([*self.base, *args], env=self.env)

    def setup(self, rootfs: Path) -> None:
        self.run("import", str(rootfs), IMAGE).check("podman import")

    def start(self, name: str, runtime: str, mib: int, kind: str) -> None:
        self.run(
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            runtime,
            "--network",
            "none",
            "--log-driver",
            "k8s-file",
            IMAGE,
            "/bin/workload",
            str(mib),
            kind,
        ).check("podman run")

    def upper(self, name: str) -> Path:
        res = self.run("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", name).check("podman inspect")
        return Path(res.stdout.strip())

    def checkpoint(self, name: str, dest: Path, compress: str) -> Timed:
        return self.run("container", "checkpoint", "--print-stats", "--export", str(dest), "--compress", compress, name)

    def restore(self, archive: Path, runtime: str | None = None) -> Timed:
        if runtime is None:
            return self.run("container", "restore", "--print-stats", "--import", str(archive))
        return timed([*self.base, "--runtime", runtime, "container", "restore", "--import", str(archive)], env=self.env)

    def refused(self, res: Timed) -> bool:
        return res.returncode != 0 and "cannot be restored with runtime" in res.stderr

    def show(self, archive: Path) -> Timed | None:
        if self.checkpointctl is None:
            return None
        return timed([self.checkpointctl, "show", str(archive)]).check("checkpointctl show")

    def remove(self, name: str) -> None:
        self.run("rm", "-f", "-t", "0", "--ignore", name).check("podman rm")

    def teardown(self) -> list[str]:
        problems = []
        if self.top.exists():
            rm = self.run("rm", "-a", "-f", "-t", "0")
            if rm.returncode != 0:
                problems.append(f"podman rm -a: {rm.stderr.strip()}")
            self.run("rmi", "-a", "-f")
            problems += remove_tree(self.top)
        return problems


# ===================================== one measurement cell =====================================
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


# ===================================== results ==================================================
def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per (op, cell): medians per engine, the ratio, amber's peak RSS."""
    groups: dict[tuple[str, Cell], dict[str, list[Sample]]] = {}
    for s in samples:
        groups.setdefault((s.op, s.cell), {}).setdefault(s.engine, []).append(s)
    rows = []
    order = list(OPS)
    for (op, cell), by_engine in sorted(
        groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1].mib, kv[0][1].kind, kv[0][1].runtime)
    ):
        amber = by_engine.get("amber", [])
        podman = by_engine.get("podman", [])
        a = _median([s.seconds for s in amber])
        p = _median([s.seconds for s in podman])
        row: dict[str, Any] = {
            "op": op, "mib": cell.mib, "kind": cell.kind, "runtime": cell.runtime,
            "amber_s": a, "podman_s": p, "ratio": (a / p) if a is not None and p else None,
            "amber_n": len(amber), "podman_n": len(podman),
            "amber_rss_mib": max((s.rss_kib for s in amber), default=0) / 1024 if amber else None,
            "amber_rss_tree_mib": max((s.rss_tree_kib for s in amber), default=0) / 1024 if amber else None,
            "podman_rss_mib": max((s.rss_kib for s in podman), default=0) / 1024 if podman else None,
            "amber_runtime_s": _median([s.runtime_seconds for s in amber if s.runtime_seconds is not None]),
            "podman_runtime_s": _median([s.runtime_seconds for s in podman if s.runtime_seconds is not None]),
            "amber_archive_work_s": _median([s.archive_work_seconds for s in amber
                                             if s.archive_work_seconds is not None]),
            "amber_head_bytes_read": max((s.head_bytes_read or 0 for s in amber), default=None),
            "amber_archive_mib": _median([s.archive_bytes / MIB for s in amber if s.archive_bytes]),
            "podman_archive_mib": _median([s.archive_bytes / MIB for s in podman if s.archive_bytes]),
        }  # fmt: skip
        row["targets"] = evaluate(row)
        rows.append(row)
    return rows


def evaluate(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that apply to this row: text, value, limit, met (None: not measurable)."""
    out: list[dict[str, Any]] = []
    op, mib = row["op"], row["mib"]

    def ratio_target(limit: float) -> None:
        r = row["ratio"]
        out.append(
            {"target": f"<= {limit} x podman", "value": r, "limit": limit, "met": None if r is None else r <= limit}
        )

    if mib >= 1024 and op in ("checkpoint_zstd", "restore_zstd"):
        ratio_target(0.5)
    if mib >= 1024 and op in ("checkpoint_none", "restore_none"):
        ratio_target(0.7)
    if mib >= 1024 and op.startswith(("checkpoint_", "restore_")):
        rss = row["amber_rss_mib"]
        out.append(
            {
                "target": "amber RSS <= 100 MiB",
                "value": rss,
                "limit": 100.0,
                "met": None if rss is None else rss <= 100.0,
            }
        )
    if op.startswith("refuse_"):
        a = row["amber_s"]
        out.append({"target": "<= 0.3 s", "value": a, "limit": 0.3, "met": None if a is None else a <= 0.3})
        w = row["amber_archive_work_s"]
        out.append(
            {"target": "archive work <= 50 ms", "value": w, "limit": 0.05, "met": None if w is None else w <= 0.05}
        )
    if op.startswith("show_"):
        a = row["amber_s"]
        out.append({"target": "<= 0.3 s", "value": a, "limit": 0.3, "met": None if a is None else a <= 0.3})
    return out


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**NO**")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| operation | MiB | data | runtime | amber s | podman s | amber/podman | amber RSS MiB | target | met? |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        targets = r["targets"] or [{"target": "", "met": None, "value": None}]
        target = "; ".join(t["target"] for t in targets) or "-"
        met = "; ".join(_met(t["met"]) for t in targets) if r["targets"] else "-"
        extra = ""
        if r["amber_archive_work_s"] is not None:
            extra = f" (read_head {r['amber_archive_work_s'] * 1000:.1f} ms)"
        lines.append(
            f"| {OPS.get(r['op'], r['op'])} | {r['mib']} | {r['kind']} | {r['runtime']} "
            f"| {_fmt(r['amber_s'])}{extra} | {_fmt(r['podman_s'])} | {_fmt(r['ratio'], digits=2)} "
            f"| {_fmt(r['amber_rss_mib'], digits=1)} | {target} | {met} |"
        )
    return "\n".join(lines)


def target_summary(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The issue's targets, one line each: the worst value measured and whether it holds."""
    specs = [
        ("checkpoint+export 1 GiB zstd <= 0.5 x podman", ("checkpoint_zstd",), "x podman"),
        ("import+restore 1 GiB zstd <= 0.5 x podman", ("restore_zstd",), "x podman"),
        ("uncompressed export and import (1 GiB) <= 0.7 x podman", ("checkpoint_none", "restore_none"), "x podman"),
        ("wrong-runtime refusal, whole command <= 0.3 s", ("refuse_zstd", "refuse_none"), "<= 0.3 s"),
        ("wrong-runtime refusal, archive work <= 50 ms", ("refuse_zstd", "refuse_none"), "archive work"),
        ("archive show <= 0.3 s", ("show_zstd", "show_none"), "<= 0.3 s"),
        (
            "peak RSS of amber, 1 GiB export/import <= 100 MiB",
            ("checkpoint_zstd", "restore_zstd", "checkpoint_none", "restore_none"),
            "RSS",
        ),
    ]
    out = []
    lines = ["| target | worst measured | met? |", "| --- | ---: | --- |"]
    for text, ops, match in specs:
        found = [t for r in rows if r["op"] in ops for t in r["targets"] if match in t["target"]]
        values = [t["value"] for t in found if t["value"] is not None]
        flags = [t["met"] for t in found]
        met = None if not found or any(f is None for f in flags) else all(flags)
        worst = max(values) if values else None
        unit = " MiB" if match == "RSS" else ("" if match == "x podman" else " s")
        out.append({"target": text, "worst": worst, "met": met, "measured": len(values), "of": len(found)})
        lines.append(f"| {text} | {_fmt(worst, unit)} | {_met(met)} |")
    return "\n".join(lines), out


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


class Interrupted(BaseException):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP stop the measurements (SIGINT too when a shell started us ignoring it)."""
    old = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """The cleanup runs to its end: a second Ctrl-C must not leave containers behind."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


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
