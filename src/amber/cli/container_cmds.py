"""Container commands: run, create, start, ps, logs, exec, stop, kill, rm, inspect, wait, pause,
unpause, diff; each also spelled `amber container VERB` (podman's), with `container ls` for ps."""

from __future__ import annotations

import argparse
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from amber.cli.output import print_json, print_table
from amber.cli.select import add_latest, chosen
from amber.errors import ExitCode, UsageError
from amber.models import Container, Status

if TYPE_CHECKING:
    from amber.engine import Engine
    from amber.engine.run_options import RunKwargs


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="container name (default: a generated one)")
    p.add_argument("--runtime", help="OCI runtime: runc, crun or a path (default from the config: crun)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("--network", default="amber", metavar="NAME", help="network to join, or none (default: amber)")
    p.add_argument("--ip", help="the container's IPv4 address on its network")
    p.add_argument("--mac-address", help="the container's MAC address on its network")
    p.add_argument(
        "--network-alias",
        action="append",
        default=[],
        metavar="ALIAS",
        help="another name the container resolves by on a network with DNS",
    )
    p.add_argument(
        "-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/PROTO]", help="publish a port"
    )
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="SRC:DEST[:ro]",
        help="a named volume or host path (or /DEST: an anonymous volume)",
    )
    p.add_argument("--tmpfs", action="append", default=[], metavar="DEST[:OPTS]", help="mount a tmpfs")
    p.add_argument("-u", "--user", help="USER[:GROUP] the command runs as (names or ids)")
    p.add_argument("--hostname", help="the container's host name (default: its short id)")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE", help="read KEY=VALUE lines")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="set a label")
    p.add_argument("-m", "--memory", help="memory limit (e.g. 512m, 1g)")
    p.add_argument("--cpus", type=float, help="CPUs the container may use (e.g. 1.5)")
    p.add_argument("--pids-limit", type=int, help="most processes the container may have")
    p.add_argument("--stop-signal", default="TERM", help="signal stop sends first (default TERM)")
    p.add_argument("--stop-timeout", type=float, default=10.0, help="seconds stop waits before KILL (10)")
    p.add_argument("--ipc", default="private", help="IPC namespace: private (default), shareable, container:NAME")
    p.add_argument("image", help="image name or id")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (default: the image's)")


def _create_kwargs(args: argparse.Namespace) -> RunKwargs:
    """Engine.create's and run's keywords. The global --runtime is the engine's default; a
    command's own --runtime wins over it."""
    return {
        "name": args.name,
        "runtime": args.runtime,
        "env": args.env,
        "workdir": args.workdir,
        "network": args.network,
        "ip": args.ip,
        "mac_address": args.mac_address,
        "network_aliases": args.network_alias,
        "publish": args.publish,
        "volumes": args.volume,
        "tmpfs": args.tmpfs,
        "user": args.user,
        "hostname": args.hostname,
        "env_files": args.env_file,
        "labels": args.label,
        "memory": args.memory,
        "cpus": args.cpus,
        "pids_limit": args.pids_limit,
        "stop_signal": args.stop_signal,
        "stop_timeout": args.stop_timeout,
        "ipc": args.ipc,
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
    return _each(args.containers, engine.start)


def _status(c: Container) -> str:
    if c.status == Status.EXITED:
        return f"exited ({c.exit_code})" if c.exit_code is not None and c.exit_code >= 0 else "exited (?)"
    return str(c.status)


def cmd_ps(args: argparse.Namespace, engine: Engine) -> int:
    from amber.engine.podman_view import ports_text, ps_template_view, ps_view

    containers = engine.ps(all=args.all or args.latest, filters=args.filter)
    if args.latest:
        containers = sorted(containers, key=lambda c: c.created)[-1:]
    if args.quiet:
        for c in containers:
            print(c.id if args.no_trunc else c.id[:12])
        return ExitCode.OK
    if args.format is not None:
        as_json = args.format.strip() == "json"
        views = [
            ps_view(c, engine.ports(c))
            if as_json
            else ps_template_view(c, no_trunc=args.no_trunc, ports=engine.ports(c))
            for c in containers
        ]
        from amber.cli.format import render_all  # --format only

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
            ports_text(engine.ports(c)),
        ]
        for c in containers
    ]
    header = ["CONTAINER ID", "NAME", "IMAGE", "RUNTIME", "STATUS", "CREATED", "PORTS"]
    print_table(header, rows, header=not args.noheading)
    return ExitCode.OK


def cmd_logs(args: argparse.Namespace, engine: Engine) -> int:
    for line in engine.logs(chosen(args, engine, "container")[0], follow=args.follow):
        stream = sys.stdout if line.stream == "stdout" else sys.stderr
        print(line.text, file=stream, flush=args.follow)
    return ExitCode.OK


def cmd_exec(args: argparse.Namespace, engine: Engine) -> int:
    code = engine.exec(
        args.container,
        args.cmd,
        env=args.env,
        workdir=args.workdir,
        tty=args.tty,
        user=args.user,
        interactive=args.interactive,
        detach=args.detach,
    )
    return code if code >= 0 else ExitCode.ERROR


def _targets(args: argparse.Namespace, engine: Engine, *, running: bool) -> list[str]:
    """The containers named, the latest (-l), or with -a/--all every one (`running`: every
    running one). Raises UsageError (none of them, or --all with others), NotFoundError."""
    if args.all:
        if args.containers or args.latest:
            raise UsageError("--all cannot be used with containers or --latest", hint="give one of them")
        return [c.id for c in engine.containers(running_only=running)]
    return chosen(args, engine)


def cmd_stop(args: argparse.Namespace, engine: Engine) -> int:
    for ref in _targets(args, engine, running=True):
        engine.stop(ref, timeout=args.time)
        print(ref)
    return ExitCode.OK


def cmd_pause(args: argparse.Namespace, engine: Engine) -> int:
    return _each(args.containers, engine.pause)


def cmd_unpause(args: argparse.Namespace, engine: Engine) -> int:
    return _each(args.containers, engine.unpause)


def _each(refs: list[str], verb: Callable[[str], object]) -> int:
    """Apply `verb` to each container, printing what the user typed (podman's output)."""
    for ref in refs:
        verb(ref)
        print(ref)
    return ExitCode.OK


def cmd_diff(args: argparse.Namespace, engine: Engine) -> int:
    found = engine.diff(args.container)
    if args.format == "json":  # podman's shape
        kinds = {"A": "added", "C": "changed", "D": "deleted"}
        print_json({name: [c.path for c in found if c.kind == k] for k, name in kinds.items()})
    else:
        for change in found:
            print(change)
    return ExitCode.OK


def cmd_cleanup(args: argparse.Namespace, engine: Engine) -> int:
    engine.cleanup(args.container, rm=args.rm)
    return ExitCode.OK


def cmd_kill(args: argparse.Namespace, engine: Engine) -> int:
    for ref in args.containers:
        engine.kill(ref, args.signal)
        print(ref)
    return ExitCode.OK


def cmd_rm(args: argparse.Namespace, engine: Engine) -> int:
    for ref in _targets(args, engine, running=False):
        engine.remove(ref, force=args.force, timeout=args.time, volumes=args.volumes)
        print(ref)
    return ExitCode.OK


def cmd_inspect(args: argparse.Namespace, engine: Engine) -> int:
    data = [engine.inspect(ref) for ref in chosen(args, engine)]
    if args.format is None or args.format.strip() == "json":
        print_json(data)
        return ExitCode.OK
    from amber.cli.format import Template  # --format only

    tpl = Template.parse(args.format)
    for d in data:
        print(tpl.render(d))
    return ExitCode.OK


def cmd_wait(args: argparse.Namespace, engine: Engine) -> int:
    for ref in args.containers:
        c = engine.wait(ref)
        print(c.exit_code if c.exit_code is not None else -1)
    return ExitCode.OK


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
_GROUPS: weakref.WeakKeyDictionary[Subparsers, Subparsers] = weakref.WeakKeyDictionary()


def container_verbs(sub: Subparsers) -> Subparsers:
    """The verbs of `amber container ...` (made on first use; checkpoint_cmds adds its own)."""
    if sub not in _GROUPS:
        group = sub.add_parser("container", help="manage containers (podman's spellings: amber container run ...)")
        _GROUPS[sub] = group.add_subparsers(dest="container_command", metavar="COMMAND", required=True)
    return _GROUPS[sub]


def register(sub: Subparsers) -> None:
    _register_verbs(sub)
    _register_verbs(container_verbs(sub), podman=True)


def register_one(sub: Subparsers, command: str) -> bool:
    """Only `command`'s parser, when it is one of amber's top-level verbs (not `container`,
    whose group holds them all): `amber ps` does not build run's 30 options. False otherwise."""
    add = _VERBS.get(command)
    if add is None or command == "cleanup":
        return False
    add(sub, False)
    return True


def register_container_verb(sub: Subparsers, verb: str) -> bool:
    """Only `amber container VERB`'s parser, when VERB is one of this module's (ps's spellings
    ls and list too): `container cleanup` builds no other verb. False otherwise."""
    add = _VERBS.get("ps" if verb in ("ls", "list") else verb)
    if add is None:
        return False
    add(container_verbs(sub), True)
    return True


def _register_verbs(sub: Subparsers, *, podman: bool = False) -> None:
    for add in _VERBS.values():
        add(sub, podman)


def _add_run(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("run", help="create and start a container")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    _create_args(p)
    p.set_defaults(handler=cmd_run)


def _add_create(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("create", help="create a container without starting it")
    _create_args(p)
    p.set_defaults(handler=cmd_create)


def _add_start(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("start", help="start created or exited containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_start)


def _add_ps(sub: Subparsers, podman: bool) -> None:
    for verb in ("ps", "ls", "list") if podman else ("ps",):
        p = sub.add_parser(verb, help="list containers")
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


def _add_logs(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("logs", help="print a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the container stops")
    add_latest(p)
    p.add_argument("container", nargs="?")
    p.set_defaults(handler=cmd_logs)


def _add_exec(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-w", "--workdir", help="working directory (default: the container's)")
    p.add_argument("-u", "--user", help="USER[:GROUP] to run as")
    p.add_argument("-i", "--interactive", action="store_true", help="pass our stdin to the command")
    p.add_argument("-d", "--detach", action="store_true", help="run it in the background")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(handler=cmd_exec)


def _add_stop(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("stop", help="stop running containers (stop signal, then KILL after -t seconds)")
    p.add_argument("-t", "--time", type=float, help="seconds to wait before KILL (default: its --stop-timeout)")
    p.add_argument("-a", "--all", action="store_true", help="stop every running container")
    add_latest(p)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=cmd_stop)


def _add_kill(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("kill", help="send a signal to running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal name or number (default KILL)")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_kill)


def _add_rm(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="stop running containers first")
    p.add_argument("-t", "--time", type=float, help="with -f: seconds to wait before KILL (default: KILL)")
    p.add_argument("-a", "--all", action="store_true", help="remove every container")
    p.add_argument("-v", "--volumes", action="store_true", help="remove their anonymous volumes (-v /path) too")
    add_latest(p)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=cmd_rm)


def _add_inspect(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("inspect", help="show containers' records and specs as JSON")
    p.add_argument("-f", "--format", help="json (default) or a template like '{{.State.Status}} {{.Name}}'")
    add_latest(p)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=cmd_inspect)


def _add_wait(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("wait", help="wait for containers to exit, print their exit codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_wait)


def _add_diff(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("diff", help="what a container changed in its file system (A/C/D lines)")
    p.add_argument("--format", choices=("json",), help="print JSON: added, changed, deleted")
    p.add_argument("container")
    p.set_defaults(handler=cmd_diff)


def _add_pause(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("pause", help="freeze every process of running containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_pause)


def _add_unpause(sub: Subparsers, _podman: bool) -> None:
    p = sub.add_parser("unpause", help="thaw paused containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_unpause)


def _add_cleanup(sub: Subparsers, podman: bool) -> None:
    if not podman:
        return
    p = sub.add_parser("cleanup", help="record an exited container's end (conmon runs it)")
    p.add_argument("--rm", action="store_true", help="remove it if it was run with --rm")
    p.add_argument("container")
    p.set_defaults(handler=cmd_cleanup)


# The verbs in the order they are registered (and listed in --help).
_VERBS: dict[str, Callable[[Subparsers, bool], None]] = {
    "run": _add_run,
    "create": _add_create,
    "start": _add_start,
    "ps": _add_ps,
    "logs": _add_logs,
    "exec": _add_exec,
    "stop": _add_stop,
    "kill": _add_kill,
    "rm": _add_rm,
    "inspect": _add_inspect,
    "wait": _add_wait,
    "diff": _add_diff,
    "pause": _add_pause,
    "unpause": _add_unpause,
    "cleanup": _add_cleanup,
}
