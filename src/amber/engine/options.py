"""The library's option rules: what the command line refuses, the library refuses too.

`Engine` builds the option records from its keyword options (the CLI's flags) and checks them
here, so a library caller gets the same UsageError a CLI user gets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from amber.engine.checkpoint import CheckpointOptions
from amber.engine.restore import RestoreOptions
from amber.errors import UsageError

PathLike = str | os.PathLike[str]


def as_path(value: PathLike) -> Path:
    """A str or os.PathLike as a Path. Raises UsageError for an empty one."""
    text = os.fspath(value)
    if not text:
        raise UsageError("an empty path was given", hint="give a file name")
    return Path(text)


def check_checkpoint(containers: Sequence[str], opts: CheckpointOptions, *, all: bool) -> None:
    """Raises UsageError for what `amber checkpoint` refuses: --all with names, no container at
    all, and the option combinations CheckpointOptions.validate refuses."""
    if all and containers:
        raise UsageError("--all and containers cannot be used together", hint="give either --all or names")
    opts.validate(None if all else len(containers))


def check_restore(container: str | None, opts: RestoreOptions, *, archive_given: bool) -> None:
    """Raises UsageError for what `amber restore` refuses: not exactly one of a container and an
    archive, and the option combinations RestoreOptions.validate refuses."""
    if not archive_given and not container:
        raise UsageError(
            "restore needs a container, or --import FILE", hint="amber restore NAME, or amber restore --import ARCHIVE"
        )
    if archive_given and container:
        raise UsageError(
            "cannot use --import with a container argument", hint="give either a container or --import FILE"
        )
    opts.validate(archive=archive_given)
