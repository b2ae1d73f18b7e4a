"""`amber archive show|inspect|memparse|diff|list|check`: read any checkpoint archive, as checkpointctl."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.cli.output import human_size, print_json, print_table
from amber.errors import ExitCode

if TYPE_CHECKING:  # the archive readers are imported by the commands that use them (start-up time)
    from amber.adapters.criu_files import Socket
    from amber.adapters.criu_images import DumpStats, Process
    from amber.adapters.criu_memory import HexRow, SearchMatch
    from amber.engine import Engine
    from amber.engine.archive_models import ArchiveInspection, ProcessMemory

# ===================================== tree printing ==========================================


@dataclass
class Node:
    text: str
    kids: list[Node] = field(default_factory=list)

    def add(self, text: str, meta: str | None = None) -> Node:
        node = Node(f"[{meta}]  {text}" if meta is not None else text)
        self.kids.append(node)
        return node

    def lines(self, prefix: str = "") -> list[str]:
        out = []
        for i, kid in enumerate(self.kids):
            last = i == len(self.kids) - 1
            out.append(f"{prefix}{'└── ' if last else '├── '}{kid.text}")
            out += kid.lines(prefix + ("    " if last else "│   "))
        return out

    def render(self) -> str:
        return "\n".join([self.text, *self.lines()])


def format_time(us: int) -> str:
    """CRIU's microseconds as checkpointctl prints them: 292 µs, 1.376 ms, 101.17 ms, 1.2 s."""
    if us < 1000:
        return f"{us} µs"
    if us < 1_000_000:
        return f"{us / 1000:.5g} ms"
    return f"{us / 1_000_000:.5g} s"


def _stats(tree: Node, st: DumpStats) -> None:
    node = tree.add("CRIU dump statistics")
    for label, us in (
        ("Freezing time", st.freezing_time),
        ("Frozen time", st.frozen_time),
        ("Memdump time", st.memdump_time),
        ("Memwrite time", st.memwrite_time),
    ):
        node.add(f"{label}: {format_time(us)}")
    node.add(f"Pages scanned: {st.pages_scanned}")
    node.add(f"Pages written: {st.pages_written}")


def _socket_line(s: Socket) -> tuple[str, str]:
    if s.kind == "UNIXSK":
        return f"UNIX ({s.type})", s.src or "@"
    if s.kind == "INETSK":
        proto = f"{s.protocol} ({s.state})" if s.protocol == "TCP" else s.protocol
        return proto, (
            f"{s.src}:{s.src_port} -> {s.dst}:{s.dst_port} (↑ {human_size(s.send_buf)} ↓ {human_size(s.recv_buf)})"
        )
    return s.protocol or s.family, f"↑ {human_size(s.send_buf)} ↓ {human_size(s.recv_buf)}"


def inspection_tree(ins: ArchiveInspection) -> Node:
    s = ins.summary
    tree = Node(s.container or "Container")
    for text in (f"Image: {s.image}", f"ID: {s.id}", f"Runtime: {s.runtime}", f"Created: {s.created}"):
        tree.add(text)
    if s.checkpointed:
        tree.add(f"Checkpointed: {s.checkpointed}")
    tree.add(f"Engine: {s.engine}")
    _networks(tree, ins)
    _ports_volumes(tree, ins)
    size = tree.add(f"Checkpoint size: {human_size(s.checkpoint_size)}")
    if s.memory_pages_size:
        size.add(f"Memory pages size: {human_size(s.memory_pages_size)}")
    if s.rootfs_diff_size:
        tree.add(f"Root FS diff size: {human_size(s.rootfs_diff_size)}")
    if ins.statistics is not None:
        _stats(tree, ins.statistics)
    _metadata(tree, ins)
    root = ins.process_root()
    if root is not None:
        _process(tree.add("Process tree"), root, ins)
    _mounts(tree, ins)
    return tree


def _networks(tree: Node, ins: ArchiveInspection) -> None:
    if not ins.networks:
        return
    nets = tree.add("Network Interfaces")
    for n in ins.networks:
        iface = nets.add(f"{n.network} ({n.interface})")
        for label, value in (("IP", n.ip), ("MAC", n.mac), ("Gateway", n.gateway)):
            if value:
                iface.add(f"{label}: {value}")


def _ports_volumes(tree: Node, ins: ArchiveInspection) -> None:
    for label, items in (("Published ports", ins.ports), ("Volumes", ins.volumes)):
        if items:
            node = tree.add(label)
            for item in items:
                node.add(item)


def _metadata(tree: Node, ins: ArchiveInspection) -> None:
    if ins.metadata is None:
        return
    meta = tree.add("Metadata")
    if ins.metadata.pod_name:
        meta.add(f"Pod name: {ins.metadata.pod_name}")
    if ins.metadata.kubernetes_namespace:
        meta.add(f"Kubernetes namespace: {ins.metadata.kubernetes_namespace}")
    if ins.metadata.annotations:
        ann = meta.add("Annotations")
        for key, value in ins.metadata.annotations.items():
            ann.add(f"{key}: {value}")


def _mounts(tree: Node, ins: ArchiveInspection) -> None:
    if not ins.mounts:
        return
    mounts = tree.add("Overview of mounts")
    for m in ins.mounts:
        node = mounts.add(f"Destination: {m.destination}")
        node.add(f"Type: {m.type}")
        node.add(f"Source: {m.source}")


def _process(parent: Node, p: Process, ins: ArchiveInspection) -> None:
    tag = str(p.pid) if p.task_state == "Alive" else f"{p.pid} ({p.task_state})"
    node = parent.add(p.cmdline or p.comm, meta=tag)
    if not p.alive_or_stopped:
        return
    if p.environment:
        env = node.add("Environment variables")
        for var in p.environment:
            env.add(var)
    if ins.files is not None:
        files = [f for f in ins.files if f.pid == p.pid]
        if files:
            of = node.add("Open files")
            for f in files:
                of.add(f.path, meta=f.label)
    if ins.sockets is not None:
        sks = [s for s in ins.sockets if s.pid == p.pid]
        if sks:
            os_ = node.add("Open sockets")
            for s in sks:
                meta, text = _socket_line(s)
                os_.add(text, meta=meta)
    from amber.adapters.criu_images import children

    for child in children(ins.processes or [], p.pid):
        _process(node, child, ins)


# ===================================== handlers ===============================================
def cmd_show(args: argparse.Namespace, engine: Engine) -> int:
    summaries = engine.show_archives(args.files)
    if len(summaries) == 1:
        print(f"\nDisplaying container checkpoint data from {summaries[0].path}\n")
    rows = [
        [
            s.container,
            s.image,
            s.id[:12],
            s.runtime,
            s.created,
            s.engine,
            human_size(s.checkpoint_size),
            human_size(s.rootfs_diff_size),
            s.compression,
        ]
        for s in summaries
    ]
    print_table(
        ["CONTAINER", "IMAGE", "ID", "RUNTIME", "CREATED", "ENGINE", "CHKPT SIZE", "ROOT FS DIFF SIZE", "COMPRESSION"],
        rows,
    )
    return ExitCode.OK


def cmd_inspect(args: argparse.Namespace, engine: Engine) -> int:
    results = [
        engine.inspect_archive(
            f,
            all=args.all,
            ps_tree=args.ps_tree,
            ps_tree_cmd=args.ps_tree_cmd,
            ps_tree_env=args.ps_tree_env,
            files=args.files,
            sockets=args.sockets,
            mounts=args.mounts,
            stats=args.stats,
            metadata=args.metadata,
            pid=args.pid,
        )
        for f in args.files_
    ]
    if args.format == "json":
        print_json([r.to_dict() for r in results])
        return ExitCode.OK
    for r in results:
        print(f"\nDisplaying container checkpoint tree view from {r.summary.path}\n")
        print(inspection_tree(r).render())
    return ExitCode.OK


def _hex_rows(rows: list[HexRow]) -> None:
    print("Address           Hexadecimal                                       ASCII            ")
    print("-" * 85)
    for r in rows:
        print("*" if r.repeated else f"{r.address:016x}  {r.hex:<47}  |{r.ascii}|")


def cmd_memparse(args: argparse.Namespace, engine: Engine) -> int:
    result: Any = engine.memparse(
        args.file,
        pid=args.pid,
        search=args.search,
        search_regex=args.search_regex,
        context=args.context,
        output=args.output,
    )
    from amber.adapters.criu_memory import SearchMatch
    from amber.engine.archive_models import MemoryDump

    if isinstance(result, MemoryDump):
        if result.output:
            print(
                f"wrote {human_size(result.bytes_written)} of memory pages of process {result.pid} "
                f"({result.name}) to {result.output}"
            )
            print_table(
                ["ADDRESS", "SIZE", "OFFSET"],
                [[f"{r.address:016x}", str(r.size), str(r.offset)] for r in result.regions],
            )
        else:
            print(f"\nDisplaying memory pages content for process ID {result.pid} from checkpoint: {args.file}\n")
            _hex_rows(result.rows)
        return ExitCode.OK
    if result and isinstance(result[0], SearchMatch) or args.search is not None or args.search_regex is not None:
        matches: list[SearchMatch] = result
        if not matches:
            print(
                f'No matches for pattern "{args.search or args.search_regex}"'
                + (f" in the memory of PID {args.pid}" if args.pid is not None else "")
            )
            return ExitCode.OK
        print_table(
            ["PID", "ADDRESS", "MATCH", "INSTANCE"],
            [[str(m.pid), f"{m.address:016x}", m.context, str(i)] for i, m in enumerate(matches, 1)],
        )
        return ExitCode.OK
    table: list[ProcessMemory] = result
    print(f"\nDisplaying processes memory sizes from {args.file}\n")
    print_table(
        ["PID", "PROCESS NAME", "MEMORY SIZE", "SHARED MEMORY SIZE"],
        [[str(m.pid), m.name, human_size(m.memory_size), human_size(m.shared_memory_size)] for m in table],
    )
    return ExitCode.OK


def cmd_diff(args: argparse.Namespace, engine: Engine) -> int:
    from amber.cli.archive_diff_view import render_diff
    from amber.engine.archive_diff import checkpointctl_json

    result = engine.diff_archives(
        args.a,
        args.b,
        ps_tree_cmd=args.ps_tree_cmd,
        ps_tree_env=args.ps_tree_env,
        files=args.files,
        sockets=args.sockets,
    )
    if args.format == "json":
        print_json(checkpointctl_json(result, ps_tree_cmd=args.ps_tree_cmd))
    else:
        print(render_diff(result, ps_tree_cmd=args.ps_tree_cmd, show_unchanged=args.show_unchanged))
    return ExitCode.OK


def _rfc822(stamp: str) -> str:
    from datetime import datetime

    try:
        when = datetime.fromisoformat((stamp or "0001-01-01T00:00:00Z").replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return when.strftime("%d %b %y %H:%M ") + (when.tzname() or "UTC")


def cmd_list(args: argparse.Namespace, engine: Engine) -> int:
    from amber.layout import KUBELET_CHECKPOINTS

    listed = engine.list_archives(args.directories)
    if not listed:
        print(f"No checkpoints found in {[str(d) for d in args.directories] or [str(KUBELET_CHECKPOINTS) + '/']}")
        return ExitCode.OK
    rows = []
    for directory in dict.fromkeys(item.directory for item in listed):
        print(f"Listing checkpoints in path: {directory}")
        for item in (i for i in listed if i.directory == directory):
            if item.summary is None:
                print(f"Error extracting information from {item.path}: {item.error}", file=sys.stderr)
                continue
            s = item.summary
            rows.append([s.namespace, s.pod, s.container, s.engine, _rfc822(s.checkpointed), Path(item.path).name])
    if rows:
        print_table(["NAMESPACE", "POD", "CONTAINER", "ENGINE", "TIME CHECKPOINTED", "CHECKPOINT NAME"], rows)
    return ExitCode.OK


def cmd_check(args: argparse.Namespace, engine: Engine) -> int:
    results = engine.check_archive(args.file, runtime=args.runtime, name=args.name)
    print_table(["CHECK", "STATUS", "REASON"], [[r.name, str(r.status), r.reason] for r in results])
    for r in results:
        if r.hint and r.status != "ok":
            print(f"hint ({r.name}): {r.hint}", file=sys.stderr)
    return ExitCode.ERROR if any(r.failed for r in results) else ExitCode.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("archive", help="read checkpoint archives (amber's, podman's, CRI-O's, containerd's)")
    asub = p.add_subparsers(dest="archive_command", metavar="SUBCOMMAND", required=True)

    s = asub.add_parser("show", help="one line per archive: container, image, runtime, engine, sizes")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(handler=cmd_show)

    s = asub.add_parser("inspect", help="an archive's details: processes, files, sockets, mounts, stats")
    s.add_argument("files_", nargs="+", metavar="FILE")
    for flag, text in (
        ("--ps-tree", "the process tree"),
        ("--ps-tree-cmd", "with full command lines"),
        ("--ps-tree-env", "with environments"),
        ("--files", "open files"),
        ("--sockets", "open sockets"),
        ("--mounts", "mounts"),
        ("--stats", "CRIU dump statistics"),
        ("--metadata", "pod and annotations"),
        ("--all", "all of the above"),
    ):
        s.add_argument(flag, action="store_true", help=f"show {text}")
    s.add_argument("--pid", "-p", type=int, help="show the process subtree of this PID")
    s.add_argument("--format", choices=("tree", "json"), default="tree")
    s.set_defaults(handler=cmd_inspect)

    s = asub.add_parser("memparse", help="the dumped memory: sizes, a hexdump, or a search")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--pid", "-p", type=int, help="the process to read")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--search", "-s", help="a string to search for")
    g.add_argument("--search-regex", "-r", help="a regular expression to search for")
    s.add_argument("--context", "-c", type=int, default=0, help="bytes shown around each match")
    s.add_argument("--output", "-o", help="write the process's raw memory pages to this file")
    s.set_defaults(handler=cmd_memparse)

    s = asub.add_parser("diff", help="what changed between two checkpoints")
    s.add_argument("a", metavar="A")
    s.add_argument("b", metavar="B")
    s.add_argument("--format", choices=("tree", "json"), default="tree")
    for flag, text in (
        ("--ps-tree-cmd", "compare full command lines"),
        ("--ps-tree-env", "compare environments"),
        ("--files", "compare open files"),
        ("--sockets", "compare open sockets"),
        ("--show-unchanged", "also show what did not change"),
    ):
        s.add_argument(flag, action="store_true", help=text)
    s.set_defaults(handler=cmd_diff)

    s = asub.add_parser("list", help="the checkpoint-* archives in directories (default: the kubelet's)")
    s.add_argument("directories", nargs="*", metavar="DIR", help="default /var/lib/kubelet/checkpoints/")
    s.set_defaults(handler=cmd_list)

    s = asub.add_parser("check", help="can this host restore the archive? (exit 1 if not)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--runtime", help="the runtime that would restore it (default: the recorded one)")
    s.add_argument("--name", help="the name it would be restored under")
    s.set_defaults(handler=cmd_check)
