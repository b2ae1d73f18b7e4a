"""`amber migrate NAME ssh://[user@]host[:port]` and the destination's hidden `amber migrate-receive`.

The work is the engine's (engine/migrate.py, engine/migrate_receive.py): these parse and print.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from amber.engine.migrate_modes import DEFAULT_MODE, MODES
from amber.errors import ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine


def cmd_migrate(args: argparse.Namespace, engine: Engine) -> int:
    from amber.engine.migrate import MigrateOptions, SshDest, migrate

    opts = MigrateOptions(
        dest=SshDest.parse(args.destination),
        remote_amber=args.remote_amber,
        identity=args.identity,
        ssh_options=tuple(args.ssh_option),
        mode=args.mode,
        tcp_established=args.tcp_established,
        pre_copy=args.pre_copy,
        keep_checkpoint=args.keep,
    )

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    report = migrate(engine, args.container, opts, say=say)
    print(report.id)
    say(f"moved in {report.total_s:.2f} s; frozen {report.frozen_s:.2f} s (until it ran on the destination)")
    return ExitCode.OK


def cmd_migrate_receive(args: argparse.Namespace, engine: Engine) -> int:
    from amber.engine.migrate_receive import receive

    return receive(engine, sys.stdin.buffer, sys.stdout.buffer)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="move a running container to another host over ssh",
        description="Move a running container to another host: ssh is the control channel (the "
        "destination runs --remote-amber), the archive goes over a direct TCP connection. Until the "
        "destination runs it, any failure restores it here; then it is removed here. --mode lazy "
        "(post-copy) is weaker: the container runs there before its memory has arrived, so this host "
        "keeps it frozen and serves the pages until the last one is fetched, and only then removes it; "
        "if this host dies before that, the container is lost. Lazy mode needs fs.pipe-max-size >= "
        "4194304 and userfaultfd on both hosts.",
    )
    p.add_argument("container", help="the running container's name or id")
    p.add_argument("destination", help="ssh://[user@]host[:port]")
    p.add_argument("--remote-amber", default="amber", metavar="CMD", help="amber's command line there (default amber)")
    p.add_argument("--identity", "-i", metavar="FILE", help="ssh's identity file (ssh -i)")
    p.add_argument("--ssh-option", "-o", action="append", default=[], metavar="OPT", help="an ssh -o option")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=f"how memory moves (default {DEFAULT_MODE})")
    p.add_argument("--tcp-established", action="store_true", help="keep the container's TCP connections")
    p.add_argument("--pre-copy", action="store_true", help="copy memory while it runs (needs dirty tracking)")
    p.add_argument("--keep", action="store_true", help="keep the source's checkpoint after the move")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the new container's id")
    p.set_defaults(handler=cmd_migrate)
    r = sub.add_parser("migrate-receive")  # hidden: amber migrate runs it on the destination, over ssh
    r.set_defaults(handler=cmd_migrate_receive)
