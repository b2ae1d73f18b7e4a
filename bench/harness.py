"""The benchmark's harness: one command timed with its peak RSS, the workload image, clean-up and
signal handling. Used by bench/run.py and bench/migrate.py; nothing here knows about engines."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 1 << 20


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


# ===================================== signals ==================================================
class Interrupted(BaseException):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


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
