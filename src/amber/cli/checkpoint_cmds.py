"""`amber checkpoint` and `amber restore` (also under `amber container`), with podman's options."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from amber.cli.container_cmds import container_verbs
from amber.cli.output import print_json
from amber.cli.progress import ProgressBar, progress_bar
from amber.cli.select import add_latest, chosen
from amber.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from amber.engine import Engine
    from amber.engine.checkpoint import Report
    from amber.models import Container


def _stats_json(reports: list[Report], key: str, started: float) -> dict[str, Any]:
    return {
        f"podman_{key}_duration": int((time.monotonic() - started) * 1e6),
        "container_statistics": [
            {"Id": r.id, f"runtime_{key}_duration": r.runtime_duration_us, "criu_statistics": r.criu_statistics}
            for r in reports
        ],
    }


def cmd_checkpoint(args: argparse.Namespace, engine: Engine) -> int:
    started = time.monotonic()
    stream = _stdout_stream() if args.export == STDOUT else None
    refs = [] if args.all else chosen(args, engine)
    bar = progress_bar("exporting", quiet=args.quiet) if args.export else None
    try:
        reports = _checkpoint(args, engine, refs, bar, stream)
    except BaseException:
        if stream is not None:  # what is left in stdout's buffer must not be flushed at exit
            _drop_stdout()
        raise
    finally:
        if bar is not None:
            bar.close()
    out = sys.stderr if stream is not None else sys.stdout  # stdout carries the archive, nothing else
    if args.print_stats:
        print(json.dumps(_stats_json(reports, "checkpoint", started), indent=4), file=out)
    else:
        # podman prints what the user typed, and ids for --all and --latest
        typed = refs if len(refs) == len(reports) and not args.latest else [r.id for r in reports]
        for ref in typed:
            print(ref, file=out)
    return ExitCode.OK


STDOUT = "-"  # --export -: the archive goes to stdout


def _stdout_stream() -> BinaryIO:
    """stdout, for the archive. Raises UsageError when it is a terminal."""
    if sys.stdout.isatty():
        raise UsageError(
            "refusing to write a checkpoint archive to a terminal (--export -)",
            hint="redirect stdout (> FILE) or pipe it: amber checkpoint --export - NAME | amber restore --import -",
        )
    sys.stdout.flush()
    return sys.stdout.buffer


def _drop_stdout() -> None:
    """Point stdout at /dev/null: a failed stream is not written to further (no flush error at exit)."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _checkpoint(
    args: argparse.Namespace, engine: Engine, refs: list[str], bar: ProgressBar | None, stream: BinaryIO | None
) -> list[Report]:
    return engine.checkpoint(
        *refs,
        all=args.all,
        export=None if stream is not None else args.export,
        export_to=stream,
        compress_level=args.compress_level,
        compress=args.compress,
        leave_running=args.leave_running,
        keep=args.keep,
        tcp_established=args.tcp_established,
        file_locks=args.file_locks,
        ignore_rootfs=args.ignore_rootfs,
        pre_checkpoint=args.pre_checkpoint,
        with_previous=args.with_previous,
        stats=args.print_stats,
        create_image=args.create_image,
        target=args.target,
        progress=bar,
        ignore_volumes=args.ignore_volumes,
    )


def _restore_targets(args: argparse.Namespace, engine: Engine) -> list[str | None]:
    if args.import_path is not None:
        if args.all or args.latest or args.container:
            raise UsageError("--import restores one archive", hint="leave out --all, --latest and container names")
        return [None]
    if args.all:
        if args.container or args.latest:
            raise UsageError("--all and container names cannot be used together", hint="give one of them")
        return [c.id for c in engine.ps(all=True, filters=["status=checkpointed"])]
    return list(chosen(args, engine, "container"))


def cmd_restore(args: argparse.Namespace, engine: Engine) -> int:
    started = time.monotonic()
    reports = []
    for target in _restore_targets(args, engine):
        bar = progress_bar("importing", quiet=args.quiet) if args.import_path not in (None, "-") else None
        try:
            c, report = _restore(args, engine, target, bar)
        finally:
            if bar is not None:
                bar.close()
        reports.append(report)
        if not args.print_stats:  # podman: what the user typed; the id for --import, --all, --latest
            print(c.id if args.all or args.latest or target is None else target)
    if args.print_stats:
        print_json(_stats_json(reports, "restore", started))
    return ExitCode.OK


def _restore(
    args: argparse.Namespace, engine: Engine, target: str | None, bar: ProgressBar | None
) -> tuple[Container, Report]:
    return engine.restore_report(
        target,
        archive=sys.stdin.buffer if args.import_path == "-" else args.import_path,
        name=args.name,
        runtime=args.runtime,
        keep=args.keep,
        tcp_established=args.tcp_established,
        tcp_close=args.tcp_close,
        file_locks=args.file_locks,
        ignore_rootfs=args.ignore_rootfs,
        stats=args.print_stats,
        trust_archive=args.trust_archive,
        progress=bar,
        ignore_static_ip=args.ignore_static_ip,
        ignore_static_mac=args.ignore_static_mac,
        ignore_volumes=args.ignore_volumes,
        publish=args.publish,
    )


def _checkpoint_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="*", help="containers to checkpoint")
    p.add_argument("-a", "--all", action="store_true", help="checkpoint all running containers")
    add_latest(p)
    p.add_argument(
        "-e",
        "--export",
        metavar="FILE",
        help="write the checkpoint to a portable archive (-: to stdout, not a terminal)",
    )
    p.add_argument("-c", "--compress", metavar="ALGO", help="zstd (default), gzip or none; with --export only")
    p.add_argument(
        "--compress-level",
        type=int,
        metavar="N",
        help=(
            "compression level: zstd 1-19 (default 3: podman's window, one thread), "
            "gzip 1-9 (default 6); config: [engine] compress_level"
        ),
    )
    p.add_argument("-R", "--leave-running", action="store_true", help="keep the container running")
    p.add_argument("-k", "--keep", action="store_true", help="keep the CRIU images and logs")
    p.add_argument("--tcp-established", action="store_true", help="checkpoint established TCP connections")
    p.add_argument("--file-locks", action="store_true", help="checkpoint file locks")
    p.add_argument("--ignore-rootfs", action="store_true", help="leave the filesystem changes out (--export)")
    p.add_argument("--ignore-volumes", action="store_true", help="leave the named volumes out (--export)")
    p.add_argument(
        "-P",
        "--pre-checkpoint",
        action="store_true",
        help="dump memory only (needs dirty-memory tracking in the kernel)",
    )
    p.add_argument("--with-previous", action="store_true", help="use the pre-checkpoint as parent")
    p.add_argument("--print-stats", action="store_true", help="print statistics as JSON (podman's shape)")
    p.add_argument(
        "--create-image",
        metavar="NAME",
        help="also store the checkpoint as the checkpoint image NAME (podman, containerd and CRI-O restore it)",
    )
    p.add_argument(
        "--target",
        default="podman",
        metavar="ENGINE",
        help="the engine that will restore it: podman (default; also amber) or containerd "
        "(the container's root directory is recorded in the mode that engine gives it)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar while exporting")
    p.set_defaults(handler=cmd_checkpoint)


def _restore_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("container", nargs="?", help="a checkpointed container, or a checkpoint image (without --import)")
    p.add_argument("-a", "--all", action="store_true", help="restore every checkpointed container")
    add_latest(p)
    p.add_argument(
        "-i", "--import", dest="import_path", metavar="FILE", help="restore from an archive (- reads it from stdin)"
    )
    p.add_argument("-n", "--name", help="name of the new container (with --import or a checkpoint image)")
    p.add_argument("-k", "--keep", action="store_true", help="keep the CRIU images and logs")
    p.add_argument("--runtime", help="runtime to restore with (must be able to restore the archive)")
    p.add_argument("--tcp-established", action="store_true", help="restore established TCP connections")
    p.add_argument("--tcp-close", action="store_true", help="restore TCP connections closed")
    p.add_argument("--file-locks", action="store_true", help="restore file locks")
    p.add_argument("--ignore-rootfs", action="store_true", help="do not apply the archive's filesystem changes")
    p.add_argument("--ignore-volumes", action="store_true", help="do not restore the archive's named volumes")
    p.add_argument("--ignore-static-ip", action="store_true", help="take a new IP, not the recorded one")
    p.add_argument("--ignore-static-mac", action="store_true", help="take a new MAC, not the recorded one")
    p.add_argument(
        "-p", "--publish", action="append", metavar="[IP:]HOST:CTR[/PROTO]", help="replace the port mappings"
    )
    p.add_argument(
        "--trust-archive",
        action="store_true",
        help="give the container the privileges its archive asks for (only for archives you trust)",
    )
    p.add_argument("--print-stats", action="store_true", help="print statistics as JSON (podman's shape)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar while importing")
    p.set_defaults(handler=cmd_restore)


# This module's verbs, top-level and under `amber container`: their help and parser builders.
_VERBS = {
    "checkpoint": ("checkpoint running containers", _checkpoint_parser),
    "restore": ("restore a checkpointed container or an archive", _restore_parser),
}


def _add(sub: argparse._SubParsersAction[argparse.ArgumentParser], verb: str) -> None:
    help_text, build = _VERBS[verb]
    build(sub.add_parser(verb, help=help_text))


def register_container_verb(sub: argparse._SubParsersAction[argparse.ArgumentParser], verb: str) -> bool:
    """Only `amber container checkpoint|restore`'s parser (`verb`). False for another verb."""
    if verb not in _VERBS:
        return False
    _add(container_verbs(sub), verb)
    return True


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb in _VERBS:
        _add(sub, verb)
    csub = container_verbs(sub)  # amber container checkpoint|restore, next to container_cmds' verbs
    for verb in _VERBS:
        _add(csub, verb)
