"""Network commands: network create / ls / inspect / rm."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from amber.cli.output import print_error, print_json, print_table
from amber.errors import AmberError, ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine
    from amber.engine.networks import NetworkService


def service(engine: Engine) -> NetworkService:
    """The network service of `engine`."""
    return engine.services.networks


def container_alive(engine: Engine, container_id: str) -> bool:
    """Does amber still know the container? (leases and volume users of removed ones are stale)"""
    try:
        engine.services.containers.store.get(container_id)
    except AmberError:
        return False
    return True


Handler = Callable[[argparse.Namespace, "Engine"], int]


def usage_of(parser: argparse.ArgumentParser) -> Handler:
    """A handler for a command family given no subcommand: its help, exit code 2."""

    def handler(args: argparse.Namespace, engine: Engine) -> int:
        parser.print_help()
        return ExitCode.USAGE

    return handler


def cmd_create(args: argparse.Namespace, engine: Engine) -> int:
    network = service(engine).create(
        args.name, args.subnet, args.gateway, internal=args.internal, dns=not args.disable_dns
    )
    print(network.name)
    return ExitCode.OK


def cmd_ls(args: argparse.Namespace, engine: Engine) -> int:
    nets = service(engine).list()
    if args.quiet:
        for net in nets:
            print(net.name)
        return ExitCode.OK
    rows = [[n.id[:12], n.name, "bridge", n.bridge, n.subnet, n.gateway] for n in nets]
    print_table(["NETWORK ID", "NAME", "DRIVER", "BRIDGE", "SUBNET", "GATEWAY"], rows)
    return ExitCode.OK


def cmd_inspect(args: argparse.Namespace, engine: Engine) -> int:
    nets = service(engine)
    print_json([nets.inspect(name) for name in args.names])
    return ExitCode.OK


def remove_each(names: list[str], remove: Callable[[str], object]) -> int:
    """Remove each object, printing its name; the first failure's exit code (others go on)."""
    status = ExitCode.OK
    for name in names:
        try:
            remove(name)
            print(name)
        except AmberError as exc:
            print_error(exc)
            if status == ExitCode.OK:
                status = exc.exit_code
    return status


def cmd_rm(args: argparse.Namespace, engine: Engine) -> int:
    nets = service(engine)
    return remove_each(args.names, lambda name: nets.remove(name, is_live=lambda cid: container_alive(engine, cid)))


def add_common(
    osub: argparse._SubParsersAction[argparse.ArgumentParser], noun: str, ls: Handler, inspect: Handler, rm: Handler
) -> None:
    """The ls, inspect and rm subcommands every object family has."""
    p = osub.add_parser("ls", aliases=["list"], help=f"list {noun}s")
    p.add_argument("-q", "--quiet", action="store_true", help="print names only")
    p.set_defaults(handler=ls)
    p = osub.add_parser("inspect", help=f"show {noun}s as JSON")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(handler=inspect)
    p = osub.add_parser("rm", aliases=["remove"], help=f"remove {noun}s (refused while containers use them)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(handler=rm)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    net = sub.add_parser(
        "network", help="manage networks: create, ls, inspect, rm", description="Manage bridge networks."
    )
    net.set_defaults(handler=usage_of(net))
    nsub = net.add_subparsers(dest="network_command", metavar="COMMAND")

    p = nsub.add_parser("create", help="create a bridge network", description="Create a bridge network.")
    p.add_argument("--subnet", help="IPv4 subnet, e.g. 10.89.7.0/24 (default: a free 10.89.x.0/24)")
    p.add_argument("--gateway", help="gateway address (default: the subnet's first address)")
    p.add_argument("--internal", action="store_true", help="no route out of the network (no masquerade)")
    p.add_argument(
        "--disable-dns", action="store_true", help="no name resolution between its containers (aardvark-dns)"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_create)
    add_common(nsub, "network", cmd_ls, cmd_inspect, cmd_rm)
