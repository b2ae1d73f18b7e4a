"""Finishing what a killed amber left half done: a checkpoint (the container is brought back from
its images if the dump had stopped it) or a restore from an archive (the half-made container
is removed).

A checkpoint or a restore from an archive writes a pending marker (podman_format.PendingCheckpoint,
PendingRestore) into the container's directory while it runs and removes it when it is done. The
container service calls `recover` whenever it finds a marker, under the container's lock, so any
command that touches the container finishes the job first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters import cgroups
from amber.adapters import podman_format as fmt
from amber.engine import scratch
from amber.engine.store import now
from amber.errors import AmberError, NotFoundError
from amber.layout import images_dir
from amber.models import Container, Status

if TYPE_CHECKING:  # restore is imported by the one path that restores: every command checks recovery
    from amber.engine.restore import ContainerOps


def revive(containers: ContainerOps, c: Container, work: Path) -> None:
    """The dump stopped `c` and what followed failed: bring it back from its images in `work`.

    The caller holds the container's lock. The images end up in the bundle's checkpoint/
    directory. Raises the restore's AmberError (or OSError moving the images) when it fails.
    """
    containers.cleanup(c)
    p = containers.paths(c.id)
    if work != p.bundle:
        shutil.rmtree(p.checkpoint, ignore_errors=True)
        shutil.move(str(images_dir(work)), p.checkpoint)
    from amber.engine.restore import RestoreOptions, restore_in_place

    restore_in_place(containers, c, containers.runtime_for(c).info, RestoreOptions(keep=False))


def _read_marker(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def recover(containers: ContainerOps, c: Container) -> Container:
    """Finish what a killed amber left half done on `c` (the caller holds its lock).

    Returns the container as it is now. Raises NotFoundError when `c` was a restore that never
    finished: it is removed.
    """
    p = containers.paths(c.id)
    if p.pending_restore.exists():
        with contextlib.suppress(AmberError):
            pending = fmt.PendingRestore.from_dict(_read_marker(p.pending_restore), p.pending_restore)
            if scratch.is_scratch(containers.layout, pending.work):
                scratch.discard(pending.work)
        with contextlib.suppress(AmberError, OSError):
            containers.cleanup(c)
        containers.store.delete(c.id)
        raise NotFoundError(
            f"no such container: {c.name} (an interrupted restore was cleaned up)", hint="restore the archive again"
        )
    if not p.pending_checkpoint.exists():
        return c
    try:
        marker: fmt.PendingCheckpoint | None = fmt.PendingCheckpoint.from_dict(
            _read_marker(p.pending_checkpoint), p.pending_checkpoint
        )
    except AmberError:
        marker = None  # cut by the crash: nothing to finish but the marker itself
    if marker is not None:
        _finish_checkpoint(containers, c, marker, p.pending_checkpoint.stat().st_mtime)
    p.pending_checkpoint.unlink(missing_ok=True)
    return containers.store.get(c.id)


def _finish_checkpoint(containers: ContainerOps, c: Container, marker: fmt.PendingCheckpoint, marked: float) -> None:
    """`marked`: when the marker was written (its mtime), to tell this checkpoint's archive from
    an older file at the export path."""
    thaw(containers, c)  # a dump killed while it had the container frozen (or a paused -R export)
    st = containers.runtime_state(c)
    running = st is not None and st.running
    done = marker.export is not None and _written_since(marker.export, marked)
    if marker.export is not None:
        for leftover in marker.export.parent.glob(f".{marker.export.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
    if marker.stops and done and not running:
        # The archive is complete and the dump stopped the container: it is checkpointed.
        with contextlib.suppress(AmberError, OSError):
            containers.cleanup(c)
        containers.store.save(dataclasses.replace(c, status=Status.CHECKPOINTED, pid=0, checkpointed=now()))
    elif not running and (images_dir(marker.work) / fmt.INVENTORY_IMG).is_file():
        # The dump stopped the container, then amber died: bring it back from its images. If that
        # fails too, the container is left stopped and the next refresh records it as exited.
        with contextlib.suppress(AmberError, OSError):
            revive(containers, c, marker.work)
    if marker.work.is_dir() and scratch.is_scratch(containers.layout, marker.work):
        scratch.discard(marker.work)


def _written_since(path: Path, since: float) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_mtime >= since


def thaw(containers: ContainerOps, c: Container) -> bool:
    """Thaw `c` when its cgroup is frozen (CRIU, or amber's -R pause, killed before thawing it).
    Returns whether it was frozen; never raises for a freezer or runtime that refuses."""
    path = containers.cgroups_path(c)
    if not path or not cgroups.frozen(path):
        return False
    with contextlib.suppress(AmberError):  # a runtime that is missing or hangs: the freezer still works
        containers.runtime_for(c).resume(c.id)
    with contextlib.suppress(OSError):
        cgroups.thaw(path)
    return True


__all__ = ["recover", "revive", "thaw"]
