"""Which containers a command names: the arguments, or podman's `--latest/-l`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from amber.errors import UsageError

if TYPE_CHECKING:
    from amber.engine import Engine


def add_latest(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--latest", action="store_true", help="act on the container created last")


def chosen(args: argparse.Namespace, engine: Engine, attr: str = "containers") -> list[str]:
    """The references given, or with --latest the last created container's id (podman prints
    what the user typed, and the id for --latest). Raises UsageError (neither, or both),
    NotFoundError (--latest without containers)."""
    refs = getattr(args, attr)
    refs = [refs] if isinstance(refs, str) else list(refs or [])
    if getattr(args, "latest", False):
        if refs:
            raise UsageError("--latest and container names cannot be used together", hint="give one of them")
        return [engine.latest().id]
    if not refs:
        raise UsageError("no container given", hint="name one or more containers, or use --latest (-l)")
    return refs
