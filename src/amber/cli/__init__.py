"""amber's command line: parsing and printing only. Every operation lives in amber.engine.

Each command module exposes `register(subparsers)`; a handler takes (args, engine) and returns
an exit code. Errors reach the user as one `error:` line and one `hint:` line; a traceback only
with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from amber import __version__
from amber.cli.output import print_error
from amber.errors import AmberError, ExitCode, UsageError

# The command modules (amber.cli.NAME), in registration order. Each is imported only when its
# commands are on the command line (or for help): `ps` does not pay for the archive commands.
MODULES = (
    "container_cmds",
    "image_cmds",
    "checkpoint_cmds",
    "archive_cmds",
    "network_cmds",
    "volume_cmds",
    "migrate_cmds",
    "misc_cmds",
)


# The commands each module registers (tests check it against a full registration): a command
# line imports and builds only its own command's parsers, not all 400 options of amber's ~60.
COMMANDS: dict[str, tuple[str, ...]] = {
    "container_cmds": (
        "container",
        "create",
        "diff",
        "exec",
        "inspect",
        "kill",
        "logs",
        "pause",
        "ps",
        "rm",
        "run",
        "start",
        "stop",
        "unpause",
        "wait",
    ),
    "image_cmds": ("image", "images", "rmi"),
    "checkpoint_cmds": ("checkpoint", "container", "restore"),
    "archive_cmds": ("archive",),
    "network_cmds": ("network",),
    "volume_cmds": ("volume",),
    "migrate_cmds": ("migrate", "migrate-receive"),
    "misc_cmds": ("demo", "info", "version"),
}
_GLOBAL_VALUES = frozenset({"--root", "--runroot", "--config", "--runtime"})  # options that take a value


def _command(argv: Sequence[str]) -> str | None:
    """The command `argv` names (None: none, or help asked before it)."""
    return _command_words(argv)[0]


def _command_words(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """The command `argv` names and the word right after it: `container`'s verb (None: none, or
    an option, help among them, comes first)."""
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help", "--"):
            return None, None
        if arg in _GLOBAL_VALUES:
            next(args, None)
        elif not arg.startswith("-"):
            verb = next(args, None)
            return arg, verb if verb is not None and not verb.startswith("-") else None
    return None, None


class Parser(argparse.ArgumentParser):
    """argparse with amber's error shape: `error: ...` then `hint: ...`, exit code 2."""

    def error(self, message: str) -> NoReturn:
        print_error(UsageError(message, hint=f"{self.prog} --help shows the usage"))
        sys.exit(ExitCode.USAGE)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """amber's parser; for `argv` naming a known command, with only that command's parsers."""
    parser = Parser(
        prog="amber",
        description="A container engine built for checkpoint and restore (podman-format archives).",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 conflict/busy, 5 precondition "
        "(root, tools, host support), 6 bad archive, 7 runtime mismatch, 130 interrupted.",
    )
    parser.add_argument("--root", help="state directory (default /var/lib/amber, or $AMBER_ROOT)")
    parser.add_argument("--runroot", help="run-time state directory (default /run/amber, or $AMBER_RUNROOT)")
    parser.add_argument("--config", help="config file (default /etc/amber/amber.toml, or $AMBER_CONFIG)")
    parser.add_argument(
        "--runtime",
        dest="global_runtime",
        metavar="RUNTIME",
        help="OCI runtime: runc, crun or a path to a runtime binary",
    )
    parser.add_argument("--debug", action="store_true", help="log every command run; tracebacks on error")
    parser.add_argument("--version", action="version", version=f"amber {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    command, verb = (None, None) if argv is None else _command_words(argv)
    owners = [name for name in MODULES if command in COMMANDS[name]]
    if command == "container" and verb is not None:
        # `amber container VERB` (conmon's exit command is `container cleanup`): the group with
        # only VERB, from the one module that registers it (container_cmds or checkpoint_cmds).
        for name in owners:
            if command_module(name).register_container_verb(sub, verb):
                return parser
    if len(owners) == 1 and command is not None:
        # A module with `register_one` can build the one command alone (container_cmds: ps).
        register_one = getattr(command_module(owners[0]), "register_one", None)
        if register_one is not None and register_one(sub, command):
            return parser
    for name in owners or MODULES:
        command_module(name).register(sub)
    return parser


def command_module(name: str) -> ModuleType:
    """The command module amber.cli.`name` (one of MODULES), imported now."""
    return importlib.import_module(f"{__name__}.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    import logging  # after parsing: --help and usage errors need no logging

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return ExitCode.USAGE
    try:
        from amber.engine import Engine

        engine = Engine(args.root, args.runroot, config=args.config, runtime=args.global_runtime)
        return int(handler(args, engine))
    except AmberError as exc:
        if args.debug:
            logging.exception("debug traceback")
        print_error(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, the traceback under --debug
        if args.debug:
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: run again with --debug for the traceback, and report it", file=sys.stderr)
        return ExitCode.ERROR


def entrypoint() -> None:
    sys.exit(main())
