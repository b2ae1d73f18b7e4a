"""The library's option rules: what the command line refuses, the library refuses too.

`Engine` builds the option records from its keyword options (the CLI's flags) and checks them
here, so a library caller gets the same UsageError a CLI user gets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from amber.engine.checkpoint import CheckpointOptions, RestoreOptions
from amber.errors import UsageError

PathLike = str | os.PathLike[str]


def as_path(value: PathLike) -> Path:
    """A str or os.PathLike as a Path. Raises UsageError for an empty one."""
    text = os.fspath(value)
    if not text:
        raise UsageError("an empty path was given", hint="give a file name")
    return Path(text)


def check_checkpoint(containers: Sequence[str], opts: CheckpointOptions, *, all: bool, compress_given: bool) -> None:
    """Raises UsageError for what `amber checkpoint` refuses: --compress or --ignore-rootfs
    without --export, --all with names, no container at all."""
    if compress_given and opts.export is None:
        raise UsageError("--compress can only be used with --export", hint="add --export FILE, or leave out --compress")
    if opts.ignore_rootfs and opts.export is None:
        raise UsageError(
            "--ignore-rootfs can only be used with --export", hint="add --export FILE, or leave out --ignore-rootfs"
        )
    if all and containers:
        raise UsageError("--all and containers cannot be used together", hint="give either --all or names")
    if not all and not containers:
        raise UsageError("you must provide at least one name or id", hint="or use --all")


def check_restore(container: str | None, opts: RestoreOptions, *, archive_given: bool) -> None:
    """Raises UsageError for what `amber restore` refuses: not exactly one of a container and an
    archive, --name or --ignore-rootfs without an archive, --tcp-established with --name."""
    if not archive_given and not container:
        raise UsageError(
            "restore needs a container, or --import FILE", hint="amber restore NAME, or amber restore --import ARCHIVE"
        )
    if archive_given and container:
        raise UsageError(
            "cannot use --import with a container argument", hint="give either a container or --import FILE"
        )
    if not archive_given and (opts.name or opts.ignore_rootfs):
        raise UsageError(
            "--name and --ignore-rootfs can only be used with --import",
            hint=f"restore {container} as it was, or restore an archive with --import",
        )
    if opts.tcp_established and opts.name:
        raise UsageError(
            "--tcp-established cannot be used with --name",
            hint="a copy under a new name cannot take over the original's connections; leave out one of them",
        )
