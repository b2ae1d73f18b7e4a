"""`amber image push` and `amber image pull`: images through registries (checkpoint images too).

`register(isub)` takes the subparsers of the `image` command group.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from amber.errors import ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine

PUSH_DESCRIPTION = """\
Push the image NAME to a registry as DEST (HOST:PORT/NAME:TAG, docker:// optional).

A checkpoint image is written as podman's `container checkpoint --create-image` writes it, with
the annotations podman, containerd (checkpointctl's org.criu.checkpoint.*) and CRI-O read, so any
of them can restore it. An ordinary image's layers are packed again into OCI layers (the same
bytes, so the same digests, on every push) with its env, entrypoint, command and workdir."""

PULL_DESCRIPTION = """\
Pull REF (HOST:PORT/NAME:TAG, docker:// optional; a name without a registry is on docker.io)
into amber's image store, named as pulled. A checkpoint image is kept as one: amber image ls
marks it, and restore takes it; an ordinary image is imported as amber image import would."""


def parse_bool(value: str) -> bool:
    low = value.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean (true or false)")


def cmd_push(args: argparse.Namespace, engine: Engine) -> int:
    pushed = engine.push_image(args.name, args.dest, tls_verify=args.tls_verify)
    print(pushed)
    return ExitCode.OK


def cmd_pull(args: argparse.Namespace, engine: Engine) -> int:
    image = engine.pull_image(args.ref, tls_verify=args.tls_verify)
    print(image.id)
    return ExitCode.OK


def _tls(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-verify",
        type=parse_bool,
        default=True,
        metavar="BOOL",
        help="require HTTPS and a trusted certificate (default true; false for a plain-HTTP registry)",
    )


def register(isub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = isub.add_parser(
        "push", help="push an image (ordinary or checkpoint)", description=PUSH_DESCRIPTION, formatter_class=fmt
    )
    p.add_argument("name", metavar="NAME", help="an image in amber's store")
    p.add_argument("dest", metavar="DEST", help="HOST:PORT/NAME:TAG")
    _tls(p)
    p.set_defaults(handler=cmd_push)

    p = isub.add_parser(
        "pull",
        help="pull an image (or a checkpoint image) from a registry",
        description=PULL_DESCRIPTION,
        formatter_class=fmt,
    )
    p.add_argument("ref", metavar="REF", help="HOST:PORT/NAME:TAG")
    _tls(p)
    p.set_defaults(handler=cmd_pull)
