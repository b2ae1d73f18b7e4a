"""`amber archive list`: the checkpoint archives (`checkpoint-*`) in directories, as checkpointctl
list shows them (the kubelet's directory by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters import checkpoint_archive as archive
from amber.errors import AmberError
from amber.layout import KUBELET_CHECKPOINTS

if TYPE_CHECKING:
    from amber.engine.archive_models import ArchiveSummary
    from amber.engine.archives import ArchiveService


@dataclass(frozen=True)
class ListedArchive:
    """One `checkpoint-*` file: its summary, or why it could not be read."""

    directory: str
    path: str
    summary: ArchiveSummary | None
    error: str = ""


def list_archives(service: ArchiveService, directories: Sequence[str | Path] = ()) -> list[ListedArchive]:
    """Every `checkpoint-*` file in `directories` (default: the kubelet's), sorted by name per
    directory. A missing directory lists nothing; an unreadable archive is listed with its
    error. Raises nothing."""
    out: list[ListedArchive] = []
    for directory in [Path(d) for d in directories] or [KUBELET_CHECKPOINTS]:
        try:
            files = sorted(p for p in directory.glob("checkpoint-*") if p.is_file())
        except OSError:
            continue
        for f in files:
            try:
                summary = service.summary_of(archive.read_head(f))
            except AmberError as exc:
                out.append(ListedArchive(str(directory), str(f), None, exc.message))
                continue
            out.append(ListedArchive(str(directory), str(f), summary))
    return out
