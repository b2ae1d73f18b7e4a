"""Container commands: run, create, start, ps, logs, exec, stop, kill, rm, inspect, wait."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from amber.cli.format import Template, render_all
from amber.cli.output import print_json, print_table
from amber.cli.select import add_latest, chosen
from amber.errors import ExitCode
from amber.models import Container, Status

if TYPE_CHECKING:
    from amber.engine import Engine


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="container name (default: a generated one)")
    p.add_argument("--runtime", help="OCI runtime: runc, crun or a path (default from the config: crun)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("--network", default="amber", metavar="NAME", help="network to join, or none (default: amber)")
    p.add_argument("--ip", help="the container's IPv4 address on its network")
    p.add_argument("--mac-address", help="the container's MAC address on its network")
    p.add_argument(
        "-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/PROTO]", help="publish a port"
    )
    p.add_argument(
        "-v", "--volume", action="append", default=[], metavar="SRC:DEST[:ro]", help="a named volume or host path"
    )
    p.add_argument("--tmpfs", action="append", default=[], metavar="DEST[:OPTS]", help="mount a tmpfs")
    p.add_argument("image", help="image name or id")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (default: the image's)")


def _create_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    # The global --runtime is the engine's default; a command's own --runtime wins over it.
    return {
        "name": args.name,
        "runtime": args.runtime,
        "env": args.env,
        "workdir": args.workdir,
        "network": args.network,
        "ip": args.ip,
        "mac_address": args.mac_address,
        "publish": args.publish,
        "volumes": args.volume,
        "tmpfs": args.tmpfs,
    }


def cmd_run(args: argparse.Namespace, engine: Engine) -> int:
    if args.detach:
        print(engine.run(args.image, args.cmd, detach=True, rm=args.rm, **_create_kwargs(args)).id)
        return ExitCode.OK
    c = engine.run(args.image, args.cmd, detach=True, **_create_kwargs(args))  # we follow its output
    for line in engine.logs(c.id, follow=True):
        stream = sys.stdout if line.stream == "stdout" else sys.stderr
        print(line.text, file=stream, flush=True)
    c = engine.finish(c.id, rm=args.rm)
    return c.exit_code if c.exit_code is not None and c.exit_code >= 0 else ExitCode.ERROR


def cmd_create(args: argparse.Namespace, engine: Engine) -> int:
    print(engine.create(args.image, args.cmd, **_create_kwargs(args)).id)
    return ExitCode.OK


def cmd_start(args: argparse.Namespace, engine: Engine) -> int:
    for ref in args.containers:
        engine.start(ref)
        print(ref)
    return ExitCode.OK


def _status(c: Container) -> str:
    if c.status == Status.EXITED:
        return f"exited ({c.exit_code})" if c.exit_code is not None and c.exit_code >= 0 else "exited (?)"
    return str(c.status)


def cmd_ps(args: argparse.Namespace, engine: Engine) -> int:
    from amber.engine.podman_view import ps_template_view, ps_view

    containers = engine.ps(all=args.all or args.latest, filters=args.filter)
    if args.latest:
        containers = sorted(containers, key=lambda c: c.created)[-1:]
    if args.quiet:
        for c in containers:
            print(c.id if args.no_trunc else c.id[:12])
        return ExitCode.OK
    if args.format is not None:
        as_json = args.format.strip() == "json"
        views = [ps_view(c) if as_json else ps_template_view(c, no_trunc=args.no_trunc) for c in containers]
        lines = render_all(args.format, views)
        table = args.format.startswith("table") and bool(views or lines)
        for line in lines[1:] if table and args.noheading and len(lines) > len(views) else lines:
            print(line)
        return ExitCode.OK
    rows = [
        [
            c.id if args.no_trunc else c.id[:12],
            c.name,
            c.image_name,
            c.runtime,
            _status(c),
            c.created[:19].replace("T", " "),
        ]
        for c in containers
    ]
    print_table(["CONTAINER ID", "NAME", "IMAGE", "RUNTIME", "STATUS", "CREATED"], rows, header=not args.noheading)
    return ExitCode.OK


def cmd_logs(args: argparse.Namespace, engine: Engine) -> int:
    for line in engine.logs(chosen(args, engine, "container")[0], follow=args.follow):
        stream = sys.stdout if line.stream == "stdout" else sys.stderr
        print(line.text, file=stream, flush=args.follow)
    return ExitCode.OK


def cmd_exec(args: argparse.Namespace, engine: Engine) -> int:
    return engine.exec(args.container, args.cmd, env=args.env, workdir=args.workdir, tty=args.tty)


def cmd_stop(args: argparse.Namespace, engine: Engine) -> int:
    for ref in chosen(args, engine):
        engine.stop(ref, timeout=args.time)
        print(ref)
    return ExitCode.OK


def cmd_kill(args: argparse.Namespace, engine: Engine) -> int:
    for ref in args.containers:
        engine.kill(ref, args.signal)
        print(ref)
    return ExitCode.OK


def cmd_rm(args: argparse.Namespace, engine: Engine) -> int:
    for ref in chosen(args, engine):
        engine.remove(ref, force=args.force)
        print(ref)
    return ExitCode.OK


def cmd_inspect(args: argparse.Namespace, engine: Engine) -> int:
    data = [engine.inspect(ref) for ref in chosen(args, engine)]
    if args.format is None or args.format.strip() == "json":
        print_json(data)
        return ExitCode.OK
    tpl = Template.parse(args.format)
    for d in data:
        print(tpl.render(d))
    return ExitCode.OK


def cmd_wait(args: argparse.Namespace, engine: Engine) -> int:
    for ref in args.containers:
        c = engine.wait(ref)
        print(c.exit_code if c.exit_code is not None else -1)
    return ExitCode.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="create and start a container")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits (not with --detach)")
    _create_args(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("create", help="create a container without starting it")
    _create_args(p)
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser("start", help="start created or exited containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_start)

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also list containers that are not running")
    p.add_argument("-q", "--quiet", action="store_true", help="print ids only")
    add_latest(p)
    p.add_argument("--no-trunc", action="store_true", help="print whole ids")
    p.add_argument("--noheading", action="store_true", help="no header line")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="name=, id=, status=, label=, ancestor= (repeatable)",
    )
    p.add_argument("--format", help="json, 'table {{.ID}} {{.Names}}', or a template like '{{.Names}} {{.Status}}'")
    p.set_defaults(handler=cmd_ps)

    p = sub.add_parser("logs", help="print a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the container stops")
    add_latest(p)
    p.add_argument("container", nargs="?")
    p.set_defaults(handler=cmd_logs)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(handler=cmd_exec)

    p = sub.add_parser("stop", help="stop running containers (TERM, then KILL after -t seconds)")
    p.add_argument("-t", "--time", type=float, default=10.0, help="seconds to wait before KILL (default 10)")
    add_latest(p)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=cmd_stop)

    p = sub.add_parser("kill", help="send a signal to running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal name or number (default KILL)")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_kill)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill running containers first")
    add_latest(p)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=cmd_rm)

    p = sub.add_parser("inspect", help="show containers' records and specs as JSON")
    p.add_argument("-f", "--format", help="json (default) or a template like '{{.State.Status}} {{.Name}}'")
    add_latest(p)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("wait", help="wait for containers to exit, print their exit codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_wait)
