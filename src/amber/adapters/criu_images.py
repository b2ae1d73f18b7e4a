"""Reading CRIU images (with pycriu): the process tree, open files, sockets and dump statistics.

Every image is `magic + {u32 size + protobuf}*`; pycriu turns it into {"magic", "entries"}. The
readers here take an `ImageDir` (a dump directory, named for messages by the archive it came
from) and return frozen dataclasses. Missing optional images give empty results; an image that
does not decode gives an ArchiveError naming it, never a pycriu traceback. Memory pages
(cmdline, environment, memparse) are in `criu_memory`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from amber.errors import ArchiveError, PreconditionError

# CRIU's task states (criu/include/pstree.h, compel task-state.h).
TASK_STATES = {1: "Alive", 2: "Dead", 3: "Stopped", 4: "Helper", 5: "Thread", 6: "Zombie"}
DUMP_STATS_FIELDS = (
    "freezing_time",
    "frozen_time",
    "memdump_time",
    "memwrite_time",
    "pages_scanned",
    "pages_skipped_parent",
    "pages_written",
    "pages_lazy",
)


def byte_size(n: int) -> str:
    """Sizes as checkpointctl prints them: `0 B`, `2.0 KiB`, `165.6 KiB`, `1.2 MiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _pycriu() -> Any:
    try:
        import pycriu
    except ImportError as exc:
        raise PreconditionError(
            "reading CRIU images needs the pycriu module, which is not installed",
            hint="install python3-pycriu (make setup), and use a Python that sees the system site packages",
        ) from exc
    return pycriu


def preload() -> threading.Thread:
    """Start importing pycriu (0.05-0.2 s: every CRIU .proto) on a thread of its own, so that it
    overlaps work that leaves the interpreter free (a kernel copy, zstd). Join the thread; it
    raises nothing (a missing pycriu is reported when images are read)."""

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module("pycriu")

    thread = threading.Thread(target=load, name="amber-pycriu-import", daemon=True)
    thread.start()
    return thread


class ImageDir:
    """A directory of CRIU images; `source` names where it came from (the archive) in errors."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self._cache: dict[str, list[dict[str, Any]] | None] = {}

    def error(self, name: str, what: str) -> ArchiveError:
        return ArchiveError(
            f"CRIU image checkpoint/{name} in {self.source} {what}",
            hint="the checkpoint is damaged or was written by an incompatible CRIU; "
            "make a new checkpoint, or read it with the CRIU version that wrote it",
        )

    def forget(self, name: str) -> None:
        """Read image `name` again next time (it was rewritten)."""
        self._cache.pop(name, None)

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def load(self, name: str, *, required: bool = True) -> list[dict[str, Any]] | None:
        """The entries of image `name`; None if it is missing and not `required`."""
        if name in self._cache:
            entries = self._cache[name]
            if entries is None and required:
                raise self.error(name, "is missing")
            return entries
        path = self.path / name
        if not path.is_file():
            self._cache[name] = None
            if required:
                raise self.error(name, "is missing")
            return None
        entries = load_entries(path, self.error)
        self._cache[name] = entries
        return entries

    def first(self, name: str, *, required: bool = True) -> dict[str, Any] | None:
        entries = self.load(name, required=required)
        if not entries:
            if required:
                raise self.error(name, "has no entries")
            return None
        return entries[0]


def load_entries(path: Path, error: Any = None) -> list[dict[str, Any]]:
    """Decode one CRIU image file; any failure is an ArchiveError naming the file."""
    pycriu = _pycriu()
    try:
        with path.open("rb") as f:
            img = pycriu.images.load(f)
    except OSError as exc:
        raise _error(path, error, f"cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pycriu raises assorted exceptions on bad images
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise _error(path, error, f"cannot be decoded ({detail})") from exc
    entries = img.get("entries") if isinstance(img, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _error(path, error, "cannot be decoded (no entries)")
    return entries


def _error(path: Path, error: Any, what: str) -> ArchiveError:
    if error is not None:
        result: ArchiveError = error(path.name, what)
        return result
    return ArchiveError(f"CRIU image {path} {what}", hint="the image is damaged or was written by an incompatible CRIU")


def int_field(d: dict[str, Any], key: str, default: int = 0) -> int:
    value = d.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# ===================================== process tree ===========================================
@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    pgid: int
    sid: int
    threads: tuple[int, ...]
    comm: str
    task_state: str  # Alive, Stopped, Zombie, Dead... ("Unknown(n)" for others)
    cmdline: str | None = None  # argv joined by spaces, as checkpointctl shows it (None: not read)
    environment: tuple[str, ...] | None = None  # KEY=VALUE, in memory order (None: not read)

    @property
    def alive_or_stopped(self) -> bool:
        return self.task_state in ("Alive", "Stopped")

    @property
    def argv(self) -> list[str]:
        return self.cmdline.rstrip(" ").split(" ") if self.cmdline else []

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threads"] = list(self.threads)
        d["environment"] = None if self.environment is None else list(self.environment)
        return d


def read_processes(d: ImageDir) -> list[Process]:
    """Every task in pstree.img with its command name and state (from core-<pid>.img)."""
    out = []
    for entry in d.load("pstree.img") or []:
        pid = int_field(entry, "pid")
        core = d.first(f"core-{pid}.img", required=False) or {}
        tc = core.get("tc") or {}
        state = int_field(tc, "task_state")
        out.append(
            Process(
                pid=pid,
                ppid=int_field(entry, "ppid"),
                pgid=int_field(entry, "pgid"),
                sid=int_field(entry, "sid"),
                threads=tuple(int(t) for t in entry.get("threads") or [pid]),
                comm=str(tc.get("comm", "")),
                task_state=TASK_STATES.get(state, f"Unknown({state})"),
            )
        )
    if not out:
        raise d.error("pstree.img", "lists no process")
    return out


def root_process(processes: Iterable[Process]) -> Process:
    procs = list(processes)
    pids = {p.pid for p in procs}
    for p in procs:
        if p.ppid == 0 or p.ppid not in pids:
            return p
    return procs[0]


def children(processes: Iterable[Process], pid: int) -> list[Process]:
    return sorted((p for p in processes if p.ppid == pid and p.pid != pid), key=lambda p: p.pid)


# ===================================== credentials ============================================
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}
CAP_FIELDS = ("cap_eff", "cap_prm", "cap_inh", "cap_bnd", "cap_amb")


@dataclass(frozen=True)
class Credentials:
    """What one task (or thread) may do, as CRIU will give it back: ids, capabilities, seccomp."""

    pid: int
    tid: int  # the thread; == pid for the main thread
    uids: tuple[int, int, int, int]  # uid, euid, suid, fsuid
    gids: tuple[int, int, int, int]  # gid, egid, sgid, fsgid
    groups: tuple[int, ...]
    cap_eff: int  # bitmasks (bit n: capability n)
    cap_prm: int
    cap_inh: int
    cap_bnd: int
    cap_amb: int
    secbits: int
    no_new_privs: bool
    seccomp_mode: str  # disabled, strict, filter


def number(d: ImageDir, name: str, entry: Any, key: str, default: int = 0) -> int:
    """A number that decides something: missing is `default`, anything but an int an ArchiveError."""
    value = entry.get(key) if isinstance(entry, dict) else ""
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int):
        raise d.error(name, f"has a non-numeric {key} ({value!r})")
    return value


def _numbers(d: ImageDir, name: str, entry: dict[str, Any], key: str) -> list[int]:
    values = entry.get(key) or []
    if not isinstance(values, list):
        raise d.error(name, f"has a malformed {key}")
    return [number(d, name, {key: v}, key) for v in values]


def read_credentials(d: ImageDir, processes: Iterable[Process]) -> list[Credentials]:
    """The credentials and seccomp mode of every thread of every live task (core-<tid>.img).

    Raises ArchiveError when a live task's core image is missing, has no credentials or does not
    decode: CRIU would restore whatever it holds, so nothing in it is skipped.
    """
    out = []
    for p in processes:
        if not p.alive_or_stopped:
            continue
        for tid in p.threads:
            name = f"core-{tid}.img"
            core = d.first(name) or {}
            thread = core.get("thread_core")
            creds = thread.get("creds") if isinstance(thread, dict) else None
            if not isinstance(thread, dict) or not isinstance(creds, dict):
                raise d.error(name, f"records no credentials for task {tid}")
            tc = core.get("tc") if isinstance(core.get("tc"), dict) else {}
            mode = thread.get("seccomp_mode", (tc or {}).get("old_seccomp_mode", 0))
            mode = SECCOMP_MODES.get(mode, mode) if isinstance(mode, int) else mode
            if mode not in SECCOMP_MODES.values():
                raise d.error(name, f"has an unknown seccomp mode ({mode!r})")
            n = [number(d, name, creds, k) for k in ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")]
            caps = {k: sum(w << (32 * i) for i, w in enumerate(_numbers(d, name, creds, k))) for k in CAP_FIELDS}
            out.append(
                Credentials(
                    p.pid,
                    tid,
                    (n[0], n[1], n[2], n[3]),
                    (n[4], n[5], n[6], n[7]),
                    tuple(_numbers(d, name, creds, "groups")),
                    **caps,
                    secbits=number(d, name, creds, "secbits"),
                    no_new_privs=bool(number(d, name, creds, "no_new_privs")),
                    seccomp_mode=str(mode),
                )
            )
    return out


# ===================================== statistics and inventory ===============================
@dataclass(frozen=True)
class DumpStats:
    """CRIU's dump statistics (stats-dump): times in microseconds, counts in pages."""

    freezing_time: int = 0
    frozen_time: int = 0
    memdump_time: int = 0
    memwrite_time: int = 0
    pages_scanned: int = 0
    pages_skipped_parent: int = 0
    pages_written: int = 0
    pages_lazy: int = 0
    extra: dict[str, int] = field(default_factory=dict)  # fields this CRIU added (page_pipes...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_dump_stats(path: Path, source: str) -> DumpStats | None:
    """The stats-dump file (STATS magic) at the archive root; None if it is not there."""
    if not path.is_file():
        return None
    entries = load_entries(
        path,
        lambda name, what: ArchiveError(
            f"{name} in {source} {what}", hint="the statistics are damaged; the checkpoint itself may be fine"
        ),
    )
    dump = (entries[0].get("dump") if entries else None) or {}
    if not isinstance(dump, dict):
        return DumpStats()
    known = {k: int_field(dump, k) for k in DUMP_STATS_FIELDS}
    extra = {k: int_field(dump, k) for k in dump if k not in DUMP_STATS_FIELDS}
    return DumpStats(**known, extra=extra)


def read_inventory(d: ImageDir) -> dict[str, Any] | None:
    return d.first("inventory.img", required=False)


# ===================================== rlimits and mounts =====================================
# RLIMIT_* in index order (include/uapi/asm-generic/resource.h): core-<pid>.img tc.rlimits.
RLIMIT_NAMES = (
    "RLIMIT_CPU RLIMIT_FSIZE RLIMIT_DATA RLIMIT_STACK RLIMIT_CORE RLIMIT_RSS RLIMIT_NPROC RLIMIT_NOFILE "
    "RLIMIT_MEMLOCK RLIMIT_AS RLIMIT_LOCKS RLIMIT_SIGPENDING RLIMIT_MSGQUEUE RLIMIT_NICE RLIMIT_RTPRIO RLIMIT_RTTIME"
).split()
RLIM_INFINITY = (1 << 64) - 1
# CRIU's fstype enum (images/mnt.proto) for the kinds a check needs to name.
FSTYPES = {
    0: "unsupported", 1: "proc", 2: "sysfs", 3: "devtmpfs", 4: "binfmt_misc", 5: "tmpfs", 6: "devpts",
    7: "simfs", 8: "pstore", 9: "securityfs", 10: "fusectl", 11: "debugfs", 12: "cgroup", 13: "aufs",
    14: "mqueue", 15: "fuse", 16: "auto", 17: "overlayfs", 18: "autofs", 19: "tracefs", 23: "cgroup2",
}  # fmt: skip


@dataclass(frozen=True)
class Rlimit:
    """One resource limit CRIU will set on a task (RLIM_INFINITY: unlimited)."""

    pid: int
    name: str  # RLIMIT_NOFILE...
    soft: int
    hard: int


@dataclass(frozen=True)
class MountPoint:
    """One mount CRIU will make in the restored mount namespace (mountpoints-<id>.img)."""

    image: str
    mountpoint: str
    fstype: str  # a FSTYPES name, or "unknown(n)"
    source: str
    root: str
    external: bool  # ext_key set: the source is what the restorer passes (--external mnt[...])


def read_rlimits(d: ImageDir, processes: Iterable[Process]) -> list[Rlimit]:
    """The resource limits of every live task; raises ArchiveError on a malformed entry."""
    out = []
    for p in processes:
        if not p.alive_or_stopped:
            continue
        name = f"core-{p.pid}.img"
        tc = _dict_of(d.first(name)).get("tc")
        rlimits = _dict_of(tc).get("rlimits")
        entries = _dict_of(rlimits).get("rlimits") or []
        if not isinstance(entries, list):
            raise d.error(name, "has malformed rlimits")
        for i, entry in enumerate(entries[: len(RLIMIT_NAMES)]):
            soft, hard = number(d, name, entry, "cur"), number(d, name, entry, "max")
            out.append(Rlimit(p.pid, RLIMIT_NAMES[i], soft, hard))
    return out


def lower_rlimits(d: ImageDir, pid: int, lowered: dict[str, tuple[int, int]]) -> None:
    """Rewrite core-<pid>.img with the (soft, hard) limits in `lowered` (by RLIMIT_* name).

    The image is written to a new file beside it and renamed over it, so a reader never sees half
    an image. Only for a dump directory amber unpacked itself (a restore's scratch)."""
    name = f"core-{pid}.img"
    path = d.path / name
    pycriu = _pycriu()
    try:
        with path.open("rb") as f:
            img = pycriu.images.load(f)
        entries = img["entries"][0]["tc"]["rlimits"]["rlimits"]
        for limit, (soft, hard) in lowered.items():
            entries[RLIMIT_NAMES.index(limit)] = {"cur": soft, "max": hard}
        tmp = path.with_name(f".{name}.lowered")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            pycriu.images.dump(img, out)
        os.replace(tmp, path)
    except OSError as exc:
        raise d.error(name, f"cannot be rewritten with this host's limits: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pycriu raises assorted exceptions on bad images
        raise d.error(name, f"cannot be rewritten with this host's limits ({type(exc).__name__})") from exc
    d.forget(name)


def read_mountpoints(d: ImageDir) -> list[MountPoint]:
    """Every mount in every mountpoints-*.img; raises ArchiveError on an image that does not decode."""
    out = []
    for path in sorted(d.path.glob("mountpoints-*.img")):
        for raw in d.load(path.name) or []:
            kind, entry = number(d, path.name, raw, "fstype"), _dict_of(raw)
            out.append(
                MountPoint(
                    image=path.name,
                    mountpoint=str(entry.get("mountpoint", "")),
                    fstype=FSTYPES.get(kind, f"unknown({kind})"),
                    source=str(entry.get("source", "")),
                    root=str(entry.get("root", "")),
                    external=bool(entry.get("ext_key")),
                )
            )
    return out


def _dict_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


__all__ = [
    "Credentials",
    "DumpStats",
    "ImageDir",
    "MountPoint",
    "Process",
    "Rlimit",
    "byte_size",
    "children",
    "load_entries",
    "number",
    "read_dump_stats",
    "read_inventory",
    "read_mountpoints",
    "read_rlimits",
    "read_credentials",
    "read_processes",
    "root_process",
]
