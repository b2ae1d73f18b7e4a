"""What changed between two checkpoints of a container (`amber archive diff`), as checkpointctl's
`diff` compares them: processes by PID, open files by (pid, fd, path), sockets by their
addresses, memory by the size of the page images. Pure functions of two inspections."""

from __future__ import annotations

from typing import Any

from amber.adapters.criu_files import FileDescriptor, Socket
from amber.adapters.criu_images import Process
from amber.engine.archive_models import ArchiveDiff, ArchiveInspection, ProcessChange, ProcessMemory


def _fkey(f: FileDescriptor) -> tuple[Any, ...]:
    return f.pid, f.fd, f.type, f.path


def _skey(s: Socket) -> tuple[Any, ...]:
    return s.pid, s.kind, s.protocol, s.type, s.src, s.src_port, s.dst, s.dst_port


def _changes(pa: Process, pb: Process, sa: int, sb: int) -> list[ProcessChange]:
    out = []
    for fld in ("comm", "cmdline", "task_state", "environment"):
        va, vb = getattr(pa, fld), getattr(pb, fld)
        if va != vb:
            shown = " ".join(va) if isinstance(va, list | tuple) else str(va)
            after = " ".join(vb) if isinstance(vb, list | tuple) else str(vb)
            out.append(ProcessChange(pa.pid, "command" if fld == "comm" else fld, shown, after))
    if sa != sb:
        out.append(ProcessChange(pa.pid, "memory_size", str(sa), str(sb)))
    return out


def diff_inspections(
    ia: ArchiveInspection,
    ma: list[ProcessMemory],
    ib: ArchiveInspection,
    mb: list[ProcessMemory],
) -> ArchiveDiff:
    """The differences from checkpoint A (`ia`, its memory table `ma`) to B. Raises nothing."""
    pa = {p.pid: p for p in ia.processes or []}
    pb = {p.pid: p for p in ib.processes or []}
    mema, memb = {m.pid: m.memory_size for m in ma}, {m.pid: m.memory_size for m in mb}
    changes: list[ProcessChange] = []
    unchanged: list[int] = []
    for pid in sorted(pa.keys() & pb.keys()):
        found = _changes(pa[pid], pb[pid], mema.get(pid, 0), memb.get(pid, 0))
        changes += found
        if not found:
            unchanged.append(pid)
    fa, fb = {_fkey(f): f for f in ia.files or []}, {_fkey(f): f for f in ib.files or []}
    sa, sb = {_skey(s): s for s in ia.sockets or []}, {_skey(s): s for s in ib.sockets or []}
    return ArchiveDiff(
        a=ia.summary,
        b=ib.summary,
        processes_added=[pb[p] for p in sorted(pb.keys() - pa.keys())],
        processes_removed=[pa[p] for p in sorted(pa.keys() - pb.keys())],
        processes_changed=changes,
        processes_unchanged=unchanged,
        files_added=[fb[k] for k in fb if k not in fa],
        files_removed=[fa[k] for k in fa if k not in fb],
        sockets_added=[sb[k] for k in sb if k not in sa],
        sockets_removed=[sa[k] for k in sa if k not in sb],
        memory_a=ma,
        memory_b=mb,
        files_unchanged=[fb[k] for k in fb if k in fa],
        sockets_unchanged=[sb[k] for k in sb if k in sa],
        tree_b=ib,
        files_compared=ia.files is not None,
        sockets_compared=ia.sockets is not None,
    )


def _omit_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", 0, [])}


def socket_info(s: Socket) -> dict[str, Any]:
    """One socket as checkpointctl's diff JSON has it (empty fields left out)."""
    inet = s.kind == "INETSK"
    return {
        "pid": s.pid,
        "protocol": s.protocol or ("UNIX" if s.kind == "UNIXSK" else s.family),
        "type": s.protocol if inet else ("UNIX" if s.kind == "UNIXSK" else s.type),
        **_omit_empty(
            {
                "address": "" if inet else s.src,
                "state": s.state if inet else "",
                "source": s.src if inet else "",
                "src_port": s.src_port if inet else 0,
                "dest": s.dst if inet else "",
                "dst_port": s.dst_port if inet else 0,
            }
        ),
    }


def _proc(p: Process, cmd: bool) -> dict[str, Any]:
    return {"pid": p.pid, "command": p.comm, **({"cmdline": p.cmdline} if cmd and p.cmdline else {})}


def _files(items: list[FileDescriptor]) -> list[dict[str, Any]]:
    return [{"path": f.path, "type": f.type, "pid": f.pid, "fd": f.label} for f in items]


def process_changes(d: ArchiveDiff, *, ps_tree_cmd: bool) -> dict[str, list[dict[str, Any]]]:
    """checkpointctl's process_changes: modified only when the command lines differ (with
    --ps-tree-cmd); every other process in both is unchanged."""
    tree_b = {p.pid: p for p in (d.tree_b.processes if d.tree_b else None) or []}
    changed_cmd = {c.pid for c in d.processes_changed if c.field == "cmdline"} if ps_tree_cmd else set()
    both = sorted(set(d.processes_unchanged) | {c.pid for c in d.processes_changed})
    return {
        "added": [_proc(p, ps_tree_cmd) for p in d.processes_added],
        "removed": [_proc(p, ps_tree_cmd) for p in d.processes_removed],
        "modified": [_proc(tree_b[p], ps_tree_cmd) for p in both if p in changed_cmd and p in tree_b],
        "unchanged": [_proc(tree_b[p], ps_tree_cmd) for p in both if p not in changed_cmd and p in tree_b],
    }


def summary_text(d: ArchiveDiff, procs: dict[str, list[dict[str, Any]]]) -> str:
    """checkpointctl's summary: one line per kind of change."""
    lines = [f"Checkpoint comparison for container {d.a.container}"]
    if procs["added"] or procs["removed"] or procs["modified"]:
        lines.append(f"Processes: +{len(procs['added'])} -{len(procs['removed'])} ~{len(procs['modified'])}")
    if d.files_compared and (d.files_added or d.files_removed):
        lines.append(f"Files: +{len(d.files_added)} -{len(d.files_removed)}")
    if d.sockets_compared and (d.sockets_added or d.sockets_removed):
        lines.append(f"Sockets: +{len(d.sockets_added)} -{len(d.sockets_removed)}")
    if d.memory_change:
        lines.append(f"Memory: {d.memory_change / 1024 / 1024:+.2f} MB")
    return "\n".join(lines)


def checkpointctl_json(d: ArchiveDiff, *, ps_tree_cmd: bool = False) -> dict[str, Any]:
    """The object `checkpointctl diff --format json` prints, and amber's `changed`."""
    procs = process_changes(d, ps_tree_cmd=ps_tree_cmd)
    out: dict[str, Any] = {
        "container_id": d.a.id,
        "container_name": d.a.container,
        "image": d.a.image,
        "checkpoint_a": {"created": d.a.created, "total_size": d.a.checkpoint_size},
        "checkpoint_b": {"created": d.b.created, "total_size": d.b.checkpoint_size},
        "process_changes": {k: v for k, v in procs.items() if v},
    }
    if d.files_compared:
        out["file_changes"] = _omit_empty(
            {
                "added": _files(d.files_added),
                "removed": _files(d.files_removed),
                "unchanged": _files(d.files_unchanged),
            }
        )
    out["memory_changes"] = {
        "size_change_bytes": d.memory_change,
        "size_change_mb": d.memory_change / 1024 / 1024,
    }
    if d.sockets_compared:
        out["socket_changes"] = _omit_empty(
            {
                "added": [socket_info(s) for s in d.sockets_added],
                "removed": [socket_info(s) for s in d.sockets_removed],
                "unchanged": [socket_info(s) for s in d.sockets_unchanged],
            }
        )
    out["summary"] = summary_text(d, procs)
    out["changed"] = d.changed
    return out
