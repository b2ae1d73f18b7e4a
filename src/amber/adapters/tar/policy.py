"""What an archive may hold beyond plain files, directories, symlinks and hard links: the Policy
a caller gives the extractor (owners, special files, symlink targets, xattrs, OCI whiteouts,
sizes, duplicates)."""

from __future__ import annotations

import enum
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amber.adapters.tar.headers import HOSTILE_HINT

if TYPE_CHECKING:
    from amber.adapters.tar.extract import Extraction

OVERLAY_XATTR_PREFIX = "trusted.overlay."
DEFAULT_RESERVE = 64 << 20  # keep this much free on the destination (at most 5 % of the filesystem)


class Symlinks(enum.StrEnum):
    CONTAINED = "contained"  # relative targets that stay inside the destination (names.symlink_escape)
    ROOTED = "rooted"  # a container root: absolute targets are container paths, `..` may follow a name
    ANY = "any"  # an image layer: any non-empty target (links are never followed while extracting)


class Duplicates(enum.StrEnum):
    REFUSE = "refuse"  # a name seen twice is hostile
    REPLACE = "replace"  # a later member replaces an earlier one (image layers)


def not_overlay(name: str) -> bool:
    """The default xattr filter: everything but overlayfs's private trusted.overlay.*."""
    return not name.startswith(OVERLAY_XATTR_PREFIX)


WhiteoutHook = Callable[["Extraction", tarfile.TarInfo, tuple[str, ...]], None]


@dataclass(frozen=True)
class Policy:
    """What an archive may contain beyond plain files, directories, symlinks and hard links."""

    keep_owner: bool = False  # else our own owner, and no set-id bits
    allow_special: bool = False  # device nodes and FIFOs
    special_refusal: str = "device nodes and FIFOs are not allowed in this archive"
    special_hint: str = HOSTILE_HINT
    symlinks: Symlinks = Symlinks.CONTAINED
    xattr_allowed: Callable[[str], bool] = not_overlay
    whiteout: WhiteoutHook | None = None  # called for members named `.wh.*` instead of creating them
    max_member_size: int | None = None
    max_total_size: int | None = None
    reserve: int | None = None  # bytes to keep free on the destination; None: DEFAULT_RESERVE (<= 5 %)
    duplicates: Duplicates = Duplicates.REFUSE
    root_entry: bool = False  # the archive's `./` gives the destination its metadata (0755 without one)
    hint: str = HOSTILE_HINT
