"""The library's option rules: what the command line refuses, the library refuses too.

`Engine` builds the option records from its keyword options (the CLI's flags) and checks them
here, so a library caller gets the same UsageError a CLI user gets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from amber.engine.attachment_records import RestoreAttachOptions
from amber.engine.checkpoint import CheckpointOptions
from amber.engine.restore import RestoreOptions
from amber.errors import UsageError

if TYPE_CHECKING:
    from amber.adapters.checkpoint_archive import Progress

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


class RestoreKwargs(RestoreAttachOptions, total=False):
    """The keywords of Engine.restore, restore_archive, restore_image and restore_report (the
    CLI's flags): RestoreOptions' fields a caller sets, the network's and volumes' too."""

    name: str | None  # only with an archive
    runtime: str | None  # default: the engine's (--runtime)
    keep: bool
    tcp_established: bool
    tcp_close: bool
    file_locks: bool
    ignore_rootfs: bool  # only with an archive
    stats: bool  # --print-stats: CRIU's statistics in the Report
    trust_archive: bool
    progress: Progress | None  # progress(done, total) while an archive is unpacked (bytes)


def restore_options(runtime_choice: str | None, **kw: Unpack[RestoreKwargs]) -> RestoreOptions:
    """The one RestoreOptions of a restore call's keywords (`runtime_choice`: the engine's
    --runtime, when the call names none). Checked by check_restore, not here."""
    publish = kw.get("publish")
    return RestoreOptions(
        name=kw.get("name"),
        runtime=kw.get("runtime") or runtime_choice,
        keep=kw.get("keep", False),
        tcp_established=kw.get("tcp_established", False),
        tcp_close=kw.get("tcp_close", False),
        file_locks=kw.get("file_locks", False),
        ignore_rootfs=kw.get("ignore_rootfs", False),
        stats=kw.get("stats", False),
        trust_archive=kw.get("trust_archive", False),
        progress=kw.get("progress"),
        ignore_static_ip=kw.get("ignore_static_ip", False),
        ignore_static_mac=kw.get("ignore_static_mac", False),
        ignore_volumes=kw.get("ignore_volumes", False),
        publish=None if publish is None else tuple(publish),
    )
