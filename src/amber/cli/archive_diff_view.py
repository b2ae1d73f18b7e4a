"""`amber archive diff`'s tree view, laid out as checkpointctl's `diff` prints it."""

from __future__ import annotations

from typing import Any

from amber.adapters.criu_images import Process, children
from amber.engine.archive_diff import process_changes, socket_info, summary_text
from amber.engine.archive_models import ArchiveDiff

_BOX = "═" * 64
_RULE = "─" * 62


def _truncate(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _section(title: str, body: list[str], width: int = 62) -> list[str]:
    head = f"┌─ {title} "
    return [head + "─" * max(width + 2 - len(head), 1) + "┐", *(f"│ {line}" for line in body), "└" + "─" * width + "┘"]


def _socket_row(sign: str, s: dict[str, Any]) -> str:
    if s["type"] in ("TCP", "UDP"):
        local = f"{s.get('source', '')}:{s.get('src_port', 0)}"
        peer = f"{s.get('dest', '')}:{s['dst_port']}" if s.get("dst_port") else "-"
        state = s.get("state") or "-"
    else:
        local, peer, state = s.get("address") or "@", "-", "-"
    return f" {sign}  {s['pid']:<5} {s['protocol']:<5} {state:<12} {local:<21} {peer}"


def _annotated(p: Process, procs: list[Process], status: dict[int, str], prefix: str, out: list[str]) -> None:
    kids = sorted(children(procs, p.pid), key=lambda c: c.pid)
    for i, kid in enumerate(kids):
        last = i == len(kids) - 1
        out.append(
            f"{prefix}{'└── ' if last else '├── '}[{status.get(kid.pid, ' ')} PID {kid.pid}]  {kid.cmdline or kid.comm}"
        )
        _annotated(kid, procs, status, prefix + ("    " if last else "│   "), out)


def _process_lines(
    d: ArchiveDiff, procs: dict[str, list[dict[str, Any]]], *, cmd: bool, show_unchanged: bool
) -> list[str]:
    tree = d.tree_b.processes if d.tree_b else None
    if show_unchanged and tree:
        status = {p["pid"]: "+" for p in procs["added"]}
        status |= {p["pid"]: "~" for p in procs["modified"]} | {p["pid"]: "=" for p in procs["unchanged"]}
        root = d.tree_b.process_root() if d.tree_b else None
        lines = ["Process tree"]
        if root is not None:
            lines.append(f"└── [{status.get(root.pid, ' ')} PID {root.pid}]  {root.cmdline or root.comm}")
            _annotated(root, tree, status, "    ", lines)
        if procs["removed"]:
            lines += ["Removed:", *(f"  - PID {p['pid']:<5} {p['command']}" for p in procs["removed"])]
        return lines
    if not (procs["added"] or procs["removed"] or procs["modified"]):
        return ["= No change"]
    lines = []
    for key, title, sign in (("added", "Added:", "+"), ("removed", "Removed:", "-"), ("modified", "Modified:", "~")):
        if procs[key]:
            lines.append(title)
            for p in procs[key]:
                lines.append(f"  {sign} PID {p['pid']:<5} {p['command']}")
                if cmd and sign == "+" and p.get("cmdline"):
                    lines.append(f"            {_truncate(p['cmdline'], 55)}")
    return lines


def render_diff(d: ArchiveDiff, *, ps_tree_cmd: bool = False, show_unchanged: bool = False) -> str:
    """The whole tree view: header box, checkpoints, memory, processes, files, sockets, summary."""
    out = [
        f"╔{_BOX}╗",
        f"║ {'Checkpoint Diff':<62} ║",
        f"╠{_BOX}╣",
        f"║ Container: {_truncate(d.a.container, 51):<51} ║",
        f"║ Image:     {_truncate(d.a.image, 51):<51} ║",
        f"║ ID:        {_truncate(d.a.id, 51):<51} ║",
        f"╚{_BOX}╝",
        "",
    ]
    for label, s in (("Checkpoint A", d.a), ("Checkpoint B", d.b)):
        out += [f"{label}:", f"  Created: {s.created}", f"  Size:    {s.checkpoint_size} bytes", ""]
    mb = d.memory_change / 1024 / 1024
    memory = f"↑ Increased by {mb:.2f} MB" if mb > 0 else f"↓ Decreased by {-mb:.2f} MB" if mb < 0 else "= No change"
    out += _section("Memory Changes", [memory])
    procs = process_changes(d, ps_tree_cmd=ps_tree_cmd)
    out += _section("Process Tree", _process_lines(d, procs, cmd=ps_tree_cmd, show_unchanged=show_unchanged))
    if d.files_compared:
        body = []
        for title, sign, items, shown in (
            ("Added:", "+", d.files_added, True),
            ("Removed:", "-", d.files_removed, True),
            ("Unchanged:", "=", d.files_unchanged, show_unchanged),
        ):
            if items and shown:
                body += [title, *(f"  {sign} PID {f.pid:<5} {f.type:<8} {_truncate(f.path, 38)}" for f in items)]
        out += _section("File Descriptor Changes", body)
    if d.sockets_compared:
        body = []
        rows = [
            ("+", d.sockets_added),
            ("-", d.sockets_removed),
            *([("=", d.sockets_unchanged)] if show_unchanged else []),
        ]
        if any(items for _, items in rows):
            body.append(f"    {'PID':<5} {'PROTO':<5} {'STATE':<12} {'LOCAL':<21} PEER")
            body += [_socket_row(sign, socket_info(s)) for sign, items in rows for s in items]
        out += _section("Socket Changes", body, width=71)
    out += ["Summary:", summary_text(d, procs)]
    return "\n".join(out)
