"""Image commands: image import / ls / rm, and the short forms images and rmi."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from amber.cli import ckpt_image_cmds
from amber.cli.output import human_size, print_error, print_table
from amber.errors import AmberError, ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine

IMPORT_DESCRIPTION = """\
Import an image from SOURCE and name it NAME.

SOURCE can be:
  - a rootfs tarball, as for podman import (tar, tar.gz, tar.zst or tar.xz): one layer, with
    PATH set and no command;
  - an OCI image layout directory (oci-layout, index.json, blobs/sha256/...);
  - an oci-archive tarball (a tar of an OCI image layout, e.g. from skopeo or podman save
    --format oci-archive);
  - a docker save tarball (docker save / podman save --format docker-archive).
A checkpoint image (an OCI layout or oci-archive made by podman's or amber's
checkpoint --create-image) is stored as a checkpoint image: restore it, it cannot be run.
Pull from registries with amber image pull.

NAME is normalized as podman does: busybox means localhost/busybox:latest.
Layers are stored once, by content: importing the same image again only adds the name."""


def cmd_import(args: argparse.Namespace, engine: Engine) -> int:
    print(engine.import_image(args.source, args.name).id)
    return ExitCode.OK


def cmd_ls(args: argparse.Namespace, engine: Engine) -> int:
    images = engine.images()
    if args.quiet:
        for image in images:
            print(image.id if args.no_trunc else image.id[:12])
        return ExitCode.OK
    rows = []
    checkpoints = engine.checkpoint_image_ids()
    for image in images:
        iid = image.id if args.no_trunc else image.id[:12]
        created = image.created[:19].replace("T", " ")
        kind = ["checkpoint" if image.id in checkpoints else "rootfs"] if checkpoints else []
        for name in image.names or ["<none>"]:
            rows.append([name, iid, created, human_size(image.size), *kind])
    # A KIND column marks checkpoint images, when there are any (podman's four columns otherwise).
    print_table(["IMAGE NAME", "ID", "CREATED", "SIZE", *(["KIND"] if checkpoints else [])], rows)
    return ExitCode.OK


def _remove_one(engine: Engine, ref: str, force: bool) -> None:
    removal = engine.remove_image(ref, force=force)
    for name in removal.untagged:
        print(f"Untagged: {name}")
    if removal.deleted:
        print(f"Deleted: {removal.image.id}")


def cmd_rm(args: argparse.Namespace, engine: Engine) -> int:
    status = ExitCode.OK
    for ref in args.images:
        try:
            _remove_one(engine, ref, args.force)
        except AmberError as exc:
            print_error(exc)
            if status == ExitCode.OK:
                status = exc.exit_code
    return status


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print image ids only")
    p.add_argument("--no-trunc", action="store_true", help="print full image ids")
    p.set_defaults(handler=cmd_ls)


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="also remove the containers that use the image (stopping them if running)",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image name, id or id prefix")
    p.set_defaults(handler=cmd_rm)


def _help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace, Engine], int]:
    def handler(args: argparse.Namespace, engine: Engine) -> int:
        parser.print_help()
        return ExitCode.USAGE

    return handler


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = sub.add_parser(
        "image",
        help="manage images: import, ls, rm, push, pull",
        description="Manage images: import, ls, rm, push, pull.",
    )
    image.set_defaults(handler=_help_of(image))
    isub = image.add_subparsers(dest="image_command", metavar="COMMAND")

    p = isub.add_parser(
        "import",
        help="import a rootfs tarball, OCI layout, oci-archive or docker save",
        description=IMPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", metavar="SOURCE", help="rootfs tarball, OCI layout directory, oci-archive or docker save tarball"
    )
    p.add_argument("name", metavar="NAME", help="image name, e.g. localhost/busybox:fixture")
    p.set_defaults(handler=cmd_import)

    ckpt_image_cmds.register(isub)
    _ls_args(isub.add_parser("ls", aliases=["list"], help="list images (checkpoint images marked)"))
    _rm_args(isub.add_parser("rm", aliases=["remove"], help="remove images (by a shared name: untag it)"))
    _ls_args(sub.add_parser("images", help="list images (= image ls)"))
    _rm_args(sub.add_parser("rmi", help="remove images (= image rm)"))
