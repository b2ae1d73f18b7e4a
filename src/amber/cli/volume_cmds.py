"""Volume commands: volume create / ls / inspect / rm."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from amber.cli.network_cmds import add_common, container_alive, remove_each, usage_of
from amber.cli.output import print_json, print_table
from amber.errors import ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine
    from amber.engine.volumes import VolumeService


def service(engine: Engine) -> VolumeService:
    """The volume service of `engine`."""
    return engine.services.volumes


def cmd_create(args: argparse.Namespace, engine: Engine) -> int:
    print(service(engine).create(args.name).name)
    return ExitCode.OK


def cmd_ls(args: argparse.Namespace, engine: Engine) -> int:
    vols = service(engine).list()
    if args.quiet:
        for vol in vols:
            print(vol.name)
        return ExitCode.OK
    print_table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in vols])
    return ExitCode.OK


def cmd_inspect(args: argparse.Namespace, engine: Engine) -> int:
    vols = service(engine)
    print_json([vols.get(name).inspect() for name in args.names])
    return ExitCode.OK


def cmd_rm(args: argparse.Namespace, engine: Engine) -> int:
    vols = service(engine)
    return remove_each(args.names, lambda name: vols.remove(name, is_live=lambda cid: container_alive(engine, cid)))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vol = sub.add_parser("volume", help="manage volumes: create, ls, inspect, rm", description="Manage named volumes.")
    vol.set_defaults(handler=usage_of(vol))
    vsub = vol.add_subparsers(dest="volume_command", metavar="COMMAND")

    p = vsub.add_parser("create", help="create a named volume")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_create)
    add_common(vsub, "volume", cmd_ls, cmd_inspect, cmd_rm)
