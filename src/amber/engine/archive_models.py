"""What `amber archive ...` returns: typed, frozen, each with `to_dict()`.

`ArchiveInspection.to_dict()` has the shape of `checkpointctl inspect --format json` (same keys,
same omissions), so tools written for one read the other.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from amber.adapters.criu_files import FileDescriptor, Socket
from amber.adapters.criu_images import DumpStats, Process, byte_size, children, root_process


@dataclass(frozen=True)
class InspectOptions:
    """What `amber archive inspect` shows beyond the summary (checkpointctl's flags): built once
    by Engine.inspect_archive from its keywords, taken by ArchiveService.inspect."""

    ps_tree: bool = False  # the process tree (the other process parts imply it)
    ps_tree_cmd: bool = False  # each process's command line (read from its memory)
    ps_tree_env: bool = False  # each process's environment (likewise)
    files: bool = False  # open files, working and root directories
    sockets: bool = False
    mounts: bool = False  # the spec's mounts
    stats: bool = False  # CRIU's dump statistics
    metadata: bool = False  # the archive's annotations and engine metadata
    pid: int | None = None  # only this process and its children

    @property
    def processes(self) -> bool:
        """Is the process tree read at all (asked for, or implied by another process part)?"""
        return (
            self.ps_tree or self.ps_tree_cmd or self.ps_tree_env or self.files or self.sockets or self.pid is not None
        )


@dataclass(frozen=True)
class ArchiveSummary:
    path: str
    container: str
    image: str
    id: str
    runtime: str
    engine: str  # Podman, CRI-O or containerd (decided as checkpointctl does)
    created: str  # RFC 3339, seconds
    checkpointed: str  # RFC 3339, or "" when the archive does not record it (podman's do not)
    checkpoint_size: int  # bytes of the files under checkpoint/
    memory_pages_size: int  # bytes of checkpoint/pages-*
    rootfs_diff_size: int
    compression: str
    pod: str = ""
    namespace: str = ""
    amber: bool = False  # written by amber (has amber.manifest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NetworkInterface:
    network: str
    interface: str
    ip: str
    mac: str
    gateway: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Metadata:
    pod_name: str
    kubernetes_namespace: str
    annotations: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.pod_name:
            d["pod_name"] = self.pod_name
        if self.kubernetes_namespace:
            d["kubernetes_namespace"] = self.kubernetes_namespace
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@dataclass(frozen=True)
class ArchiveInspection:
    summary: ArchiveSummary
    networks: list[NetworkInterface] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # published ports, [IP:]HOST:CTR/PROTO
    volumes: list[str] = field(default_factory=list)  # -v specs: named volumes and binds
    statistics: DumpStats | None = None
    metadata: Metadata | None = None
    processes: list[Process] | None = None  # flat; the tree is built from ppid
    root_pid: int | None = None  # --pid: show the subtree of this process
    files: list[FileDescriptor] | None = None
    sockets: list[Socket] | None = None
    mounts: list[Mount] | None = None

    def process_root(self) -> Process | None:
        if not self.processes:
            return None
        if self.root_pid is not None:
            for p in self.processes:
                if p.pid == self.root_pid:
                    return p
        return root_process(self.processes)

    def shown_pids(self) -> list[int]:
        """PIDs in the (sub)tree shown, depth first, children by PID."""
        root = self.process_root()
        if root is None or self.processes is None:
            return []
        out: list[int] = []

        def walk(p: Process) -> None:
            out.append(p.pid)
            if p.alive_or_stopped:
                for c in children(self.processes or [], p.pid):
                    walk(c)

        walk(root)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The `checkpointctl inspect --format json` object for this archive."""
        s = self.summary
        d: dict[str, Any] = {
            "container_name": s.container,
            "image": s.image,
            "id": s.id,
            "runtime": s.runtime,
            "created": s.created,
        }
        if s.checkpointed:
            d["checkpointed"] = s.checkpointed
        d["engine"] = s.engine
        if self.networks:
            # checkpointctl's top-level ip and mac: every interface's, by network then interface
            ordered = sorted(self.networks, key=lambda n: (n.network, n.interface))
            ips = ", ".join(n.ip.split("/", 1)[0] for n in ordered if n.ip)
            macs = ", ".join(m for _, _, m in dict.fromkeys((n.network, n.interface, n.mac) for n in ordered) if m)
            d |= {k: v for k, v in (("ip", ips), ("mac", macs)) if v}
            nets: dict[str, dict[str, Any]] = {}
            for n in self.networks:
                iface = {k: v for k, v in (("ip", n.ip), ("mac", n.mac), ("gateway", n.gateway)) if v}
                nets.setdefault(n.network, {"name": n.network, "interfaces": {}})["interfaces"][n.interface] = iface
            d["networks"] = list(nets.values())
        if self.ports:
            d["ports"] = list(self.ports)
        if self.volumes:
            d["volumes"] = list(self.volumes)
        size = {
            "total_size": s.checkpoint_size,
            "memory_pages_size": s.memory_pages_size,
            "root_fs_diff_size": s.rootfs_diff_size,
        }
        d["checkpoint_size"] = {k: v for k, v in size.items() if v}
        if self.statistics is not None:
            st = self.statistics
            stats = {
                "freezing_time": st.freezing_time,
                "frozen_time": st.frozen_time,
                "memdump_time": st.memdump_time,
                "memwrite_time": st.memwrite_time,
                "pages_scanned": st.pages_scanned,
                "pages_written": st.pages_written,
            }
            d["statistics"] = {k: v for k, v in stats.items() if v}
        if self.metadata is not None:
            d["metadata"] = self.metadata.to_dict()
        root = self.process_root()
        if root is not None:
            d["process_tree"] = self._ps_node(root)
        shown = set(self.shown_pids()) if self.processes else set()
        if self.files is not None:
            d["file_descriptors"] = self._per_pid(self.files, shown, "open_files", _file_json)
        if self.sockets is not None:
            sks = self._per_pid(self.sockets, shown, "open_sockets", _socket_json)
            if sks:
                d["sockets"] = sks
        if self.mounts:
            d["mounts"] = [m.to_dict() for m in self.mounts]
        return d

    def _ps_node(self, p: Process) -> dict[str, Any]:
        node: dict[str, Any] = {"pid": p.pid, "command": p.comm}
        if p.task_state != "Alive":
            node["task_state"] = p.task_state
        if not p.alive_or_stopped:
            return node
        if p.cmdline:
            node["cmdline"] = p.cmdline
        if p.environment:
            env: dict[str, str] = {}
            for var in p.environment:
                key, sep, value = var.partition("=")
                if sep and key:
                    env[key] = value
            node["environment_variables"] = dict(sorted(env.items()))
        kids = [self._ps_node(c) for c in children(self.processes or [], p.pid)]
        if kids:
            node["children"] = kids
        return node

    @staticmethod
    def _per_pid(items: list[Any], shown: set[int], key: str, conv: Any) -> list[dict[str, Any]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for item in items:
            if not shown or item.pid in shown:
                out.setdefault(item.pid, []).append(conv(item))
        return [{"pid": pid, key: entries} for pid, entries in out.items()]


def _file_json(f: FileDescriptor) -> dict[str, Any]:
    return {"type": f.type, "fd": f.label, "path": f.path}


def _socket_json(s: Socket) -> dict[str, Any]:
    if s.kind == "UNIXSK":
        data: dict[str, Any] = {"type": "UNIX", "address": s.src}
    elif s.kind == "INETSK":
        data = {
            "type": s.protocol,
            "state": s.state,
            "src": s.src,
            "src_port": s.src_port,
            "dst": s.dst,
            "dst_port": s.dst_port,
            "send_buf": byte_size(s.send_buf),
            "recv_buf": byte_size(s.recv_buf),
        }
    else:
        data = {"send_buf": byte_size(s.send_buf), "recv_buf": byte_size(s.recv_buf)}
    out: dict[str, Any] = {}
    if s.protocol:
        out["protocol"] = s.protocol
    out["data"] = {k: v for k, v in data.items() if v}
    return out


# ===================================== memparse ===============================================
@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str
    memory_size: int  # bytes the pagemap covers
    shared_memory_size: int  # bytes of MAP_SHARED mappings
    pages_file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryRegion:
    address: int
    size: int
    offset: int  # where its bytes start in the raw output

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryDump:
    """memparse --pid: the hexdump rows, or (with --output) where the raw pages went."""

    pid: int
    name: str
    rows: list[Any]  # criu_memory.HexRow
    output: str = ""
    bytes_written: int = 0
    regions: list[MemoryRegion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "rows": [r.to_dict() for r in self.rows],
            "output": self.output,
            "bytes_written": self.bytes_written,
            "regions": [r.to_dict() for r in self.regions],
        }


# ===================================== diff ===================================================
@dataclass(frozen=True)
class ProcessChange:
    pid: int
    field: str  # command, cmdline, task_state, memory_size
    before: str
    after: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArchiveDiff:
    a: ArchiveSummary
    b: ArchiveSummary
    processes_added: list[Process]
    processes_removed: list[Process]
    processes_changed: list[ProcessChange]
    processes_unchanged: list[int]
    files_added: list[FileDescriptor]
    files_removed: list[FileDescriptor]
    sockets_added: list[Socket]
    sockets_removed: list[Socket]
    memory_a: list[ProcessMemory]
    memory_b: list[ProcessMemory]
    files_unchanged: list[FileDescriptor] = field(default_factory=list)
    sockets_unchanged: list[Socket] = field(default_factory=list)
    tree_b: ArchiveInspection | None = None  # B's process tree, for --show-unchanged
    files_compared: bool = True
    sockets_compared: bool = True

    @property
    def memory_change(self) -> int:
        """Bytes of memory pages B has more than A (checkpointctl's size_change_bytes)."""
        return self.b.memory_pages_size - self.a.memory_pages_size

    @property
    def changed(self) -> bool:
        return bool(
            self.processes_added
            or self.processes_removed
            or self.processes_changed
            or self.files_added
            or self.files_removed
            or self.sockets_added
            or self.sockets_removed
        )

    def to_dict(self) -> dict[str, Any]:
        def dicts(items: list[Any]) -> list[dict[str, Any]]:
            return [i.to_dict() for i in items]

        return {
            "checkpoint_a": self.a.to_dict(),
            "checkpoint_b": self.b.to_dict(),
            "processes": {
                "added": dicts(self.processes_added),
                "removed": dicts(self.processes_removed),
                "changed": dicts(self.processes_changed),
                "unchanged": self.processes_unchanged,
            },
            "files": {"added": dicts(self.files_added), "removed": dicts(self.files_removed)},
            "sockets": {"added": dicts(self.sockets_added), "removed": dicts(self.sockets_removed)},
            "memory": {
                "a": dicts(self.memory_a),
                "b": dicts(self.memory_b),
                "total_a": sum(m.memory_size for m in self.memory_a),
                "total_b": sum(m.memory_size for m in self.memory_b),
            },
            "changed": self.changed,
        }


# ===================================== check ==================================================
class CheckStatus(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    name: str  # runtime, criu-version, cpu, kernel, image, name
    status: CheckStatus
    reason: str
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAIL

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = str(self.status)
        return d


__all__ = [
    "ArchiveDiff",
    "ArchiveInspection",
    "ArchiveSummary",
    "CheckResult",
    "CheckStatus",
    "MemoryDump",
    "MemoryRegion",
    "Metadata",
    "Mount",
    "NetworkInterface",
    "ProcessChange",
    "ProcessMemory",
]
