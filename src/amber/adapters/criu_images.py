"""Reading CRIU images (with pycriu): the process tree, open files, sockets and dump statistics.

Every image is `magic + {u32 size + protobuf}*`; pycriu turns it into {"magic", "entries"}. The
readers here take an `ImageDir` (a dump directory, named for messages by the archive it came
from) and return frozen dataclasses. Missing optional images give empty results; an image that
does not decode gives an ArchiveError naming it, never a pycriu traceback. Memory pages
(cmdline, environment, memparse) are in `criu_memory`.
"""

from __future__ import annotations

import ipaddress
import quopri
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from amber.errors import ArchiveError, PreconditionError

# CRIU's task states (criu/include/pstree.h, compel task-state.h).
TASK_STATES = {1: "Alive", 2: "Dead", 3: "Stopped", 4: "Helper", 5: "Thread", 6: "Zombie"}
# Linux TCP states (include/net/tcp_states.h); CRIU records the kernel's numbers.
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
FAMILIES = {1: "UNIX", 2: "IPV4", 10: "IPV6", 16: "NETLINK", 17: "PACKET"}
SOCK_TYPES = {1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 10: "PACKET"}
PROTOCOLS = {0: "", 1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 58: "ICMPV6", 136: "UDPLITE", 255: "RAW"}
SOCKET_FD_TYPES = ("UNIXSK", "INETSK", "PACKETSK", "NETLINKSK")
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


def _int(d: dict[str, Any], key: str, default: int = 0) -> int:
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
        pid = _int(entry, "pid")
        core = d.first(f"core-{pid}.img", required=False) or {}
        tc = core.get("tc") or {}
        state = _int(tc, "task_state")
        out.append(
            Process(
                pid=pid,
                ppid=_int(entry, "ppid"),
                pgid=_int(entry, "pgid"),
                sid=_int(entry, "sid"),
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


# ===================================== files and sockets ======================================
@dataclass(frozen=True)
class FileDescriptor:
    pid: int
    fd: str  # "0", "1"... or "cwd", "root"
    type: str  # REG, PIPE, UNIXSK, INETSK... ("" for cwd and root)
    path: str

    @property
    def label(self) -> str:
        return f"{self.type} {self.fd}".strip()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Socket:
    pid: int
    fd: int
    kind: str  # the fd type: UNIXSK, INETSK, PACKETSK, NETLINKSK
    family: str = ""  # IPV4, IPV6, UNIX...
    protocol: str = ""  # TCP, UDP...
    type: str = ""  # STREAM, DGRAM...
    state: str = ""  # ESTABLISHED, LISTEN... (TCP numbering, as the kernel reports it)
    src: str = ""  # address, or the unix socket's name ("@..." for abstract ones)
    src_port: int = 0
    dst: str = ""
    dst_port: int = 0
    send_buf: int = 0
    recv_buf: int = 0
    ino: int = 0
    peer: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _files_by_id(d: ImageDir) -> dict[int, dict[str, Any]]:
    return {_int(e, "id"): e for e in d.load("files.img", required=False) or []}


def _fdinfo(d: ImageDir, pid: int) -> list[dict[str, Any]]:
    ids = d.first(f"ids-{pid}.img", required=False)
    if ids is None:
        return []
    return d.load(f"fdinfo-{_int(ids, 'files_id')}.img", required=False) or []


def _unix_name(raw: Any) -> str:
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, bytes):
        return ""
    name = quopri.decodestring(raw)
    if name.startswith(b"\0"):
        name = b"@" + name[1:]
    return name.decode(errors="replace")


def _file_path(files: dict[int, dict[str, Any]], fid: int, ftype: str) -> str:
    """How checkpointctl names an open file: its path, pipe[ino], unix[ino (peer) name], TYPE.id."""
    entry = files.get(fid) or {}
    if ftype == "REG":
        reg = entry.get("reg")
        return str(reg.get("name", "unknown")) if isinstance(reg, dict) else "unknown"
    if ftype == "PIPE":
        pipe = entry.get("pipe")
        return f"pipe[{_int(pipe, 'pipe_id')}]" if isinstance(pipe, dict) else "pipe[?]"
    if ftype == "UNIXSK":
        usk = entry.get("usk")
        if not isinstance(usk, dict):
            return "unix[?]"
        return f"unix[{_int(usk, 'ino')} ({_int(usk, 'peer')}) {_unix_name(usk.get('name'))}]"
    return f"{ftype}.{fid}"


def read_files(d: ImageDir, processes: Iterable[Process]) -> list[FileDescriptor]:
    """Open files of each live process (fdinfo via ids' files_id), then its cwd and root (fs-<pid>)."""
    files = _files_by_id(d)
    out: list[FileDescriptor] = []
    for p in processes:
        if not p.alive_or_stopped:
            continue
        for fdi in _fdinfo(d, p.pid):
            ftype = str(fdi.get("type", ""))
            out.append(FileDescriptor(p.pid, str(_int(fdi, "fd")), ftype, _file_path(files, _int(fdi, "id"), ftype)))
        fs = d.first(f"fs-{p.pid}.img", required=False)
        if fs is not None:
            out.append(FileDescriptor(p.pid, "cwd", "", _file_path(files, _int(fs, "cwd_id"), "REG")))
            out.append(FileDescriptor(p.pid, "root", "", _file_path(files, _int(fs, "root_id"), "REG")))
    return out


def _ip(parts: Any, family: int) -> str:
    if not isinstance(parts, list) or not parts:
        return ""
    try:
        raw = b"".join(struct.pack("<I", int(x) & 0xFFFFFFFF) for x in parts)
        if family == 10 or len(parts) == 4:
            return str(ipaddress.IPv6Address(raw[:16]))
        return str(ipaddress.IPv4Address(raw[:4]))
    except (ValueError, struct.error):
        return ""


def _socket(pid: int, fd: int, kind: str, entry: dict[str, Any]) -> Socket | None:
    key = {"INETSK": "isk", "UNIXSK": "usk", "PACKETSK": "psk", "NETLINKSK": "nlsk"}[kind]
    sk = entry.get(key)
    if not isinstance(sk, dict):
        return Socket(pid, fd, kind)
    opts = sk.get("opts")
    opts = opts if isinstance(opts, dict) else {}
    send, recv = _int(opts, "so_sndbuf"), _int(opts, "so_rcvbuf")
    if kind == "INETSK":
        family = _int(sk, "family")
        proto = _int(sk, "proto")
        return Socket(
            pid,
            fd,
            kind,
            family=FAMILIES.get(family, str(family)),
            protocol=PROTOCOLS.get(proto, str(proto)),
            type=SOCK_TYPES.get(_int(sk, "type"), ""),
            state=TCP_STATES.get(_int(sk, "state"), ""),
            src=_ip(sk.get("src_addr"), family),
            src_port=_int(sk, "src_port"),
            dst=_ip(sk.get("dst_addr"), family),
            dst_port=_int(sk, "dst_port"),
            ino=_int(sk, "ino"),
            send_buf=send,
            recv_buf=recv,
        )
    if kind == "UNIXSK":
        return Socket(
            pid,
            fd,
            kind,
            family="UNIX",
            type=SOCK_TYPES.get(_int(sk, "type"), ""),
            state=TCP_STATES.get(_int(sk, "state"), ""),
            src=_unix_name(sk.get("name")),
            ino=_int(sk, "ino"),
            peer=_int(sk, "peer"),
            send_buf=send,
            recv_buf=recv,
        )
    proto = _int(sk, "protocol")
    return Socket(
        pid,
        fd,
        kind,
        family="PACKET" if kind == "PACKETSK" else "NETLINK",
        protocol=PROTOCOLS.get(proto, str(proto)),
        type=SOCK_TYPES.get(_int(sk, "type"), ""),
        state=TCP_STATES.get(_int(sk, "state"), ""),
        ino=_int(sk, "ino"),
        send_buf=send,
        recv_buf=recv,
    )


def read_sockets(d: ImageDir, processes: Iterable[Process]) -> list[Socket]:
    """The sockets each live process has open (unix, inet, packet, netlink)."""
    files = _files_by_id(d)
    out: list[Socket] = []
    for p in processes:
        if not p.alive_or_stopped:
            continue
        for fdi in _fdinfo(d, p.pid):
            kind = str(fdi.get("type", ""))
            if kind in SOCKET_FD_TYPES:
                sk = _socket(p.pid, _int(fdi, "fd"), kind, files.get(_int(fdi, "id")) or {})
                if sk is not None:
                    out.append(sk)
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
    known = {k: _int(dump, k) for k in DUMP_STATS_FIELDS}
    extra = {k: _int(dump, k) for k in dump if k not in DUMP_STATS_FIELDS}
    return DumpStats(**known, extra=extra)


def read_inventory(d: ImageDir) -> dict[str, Any] | None:
    return d.first("inventory.img", required=False)


__all__ = [
    "Credentials",
    "DumpStats",
    "FileDescriptor",
    "ImageDir",
    "Process",
    "Socket",
    "byte_size",
    "children",
    "load_entries",
    "number",
    "read_dump_stats",
    "read_files",
    "read_inventory",
    "read_credentials",
    "read_processes",
    "read_sockets",
    "root_process",
]
