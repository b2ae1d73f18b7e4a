"""`amber container diff`: what a container changed in its root file system, in podman's format
(`A /path` added, `C /path` changed, `D /path` deleted), read from its overlay upper directory
against the image's layers, so it works whether the container runs, exited or is checkpointed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True, order=True)
class Change:
    path: str  # container-absolute, e.g. "/etc/motd"
    kind: str  # "A", "C" or "D"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _in_lower(layers: Sequence[Path], rel: str) -> Path | None:
    """The image's `rel` (its layers, top first), None when it has none. A whiteout or an opaque
    directory above hides what lies below."""
    parts = rel.split("/")
    for layer in layers:
        for i in range(1, len(parts)):
            parent = layer.joinpath(*parts[:i])
            if _whiteout(layer.joinpath(*parts[: i - 1], f".wh.{parts[i - 1]}")) or _opaque(parent):
                return None
        if _whiteout(layer.joinpath(*parts[:-1], f".wh.{parts[-1]}")) or _whiteout_dev(layer / rel):
            return None
        if os.path.lexists(layer / rel):
            return layer / rel
    return None


def _dir_changed(st: os.stat_result, lower: Path) -> bool:
    """Did a copied-up directory change itself? podman (containers/storage) compares the mode,
    owner and device, never a directory's mtime: a directory that was only copied up (a file made
    and removed in it) is not a change."""
    try:
        old = os.lstat(lower)
    except OSError:
        return True
    return (st.st_mode, st.st_uid, st.st_gid, st.st_rdev) != (old.st_mode, old.st_uid, old.st_gid, old.st_rdev)


def _whiteout(path: Path) -> bool:
    return os.path.lexists(path)


def _whiteout_dev(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def changes(upper: Path, layers: Sequence[Path]) -> list[Change]:
    """The changes recorded in `upper` over `layers` (the image's, top layer first), by path."""
    return sorted(_walk(upper, "", layers))


def _walk(path: Path, rel: str, layers: Sequence[Path]) -> Iterator[Change]:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            yield Change("/" + child, "D")
            continue
        lower = _in_lower(layers, child)
        if not stat.S_ISDIR(st.st_mode):
            yield Change("/" + child, "A" if lower is None else "C")
            continue
        below = list(_hidden(child, layers, Path(entry.path))) if lower and _opaque(Path(entry.path)) else []
        below += _walk(Path(entry.path), child, layers)
        if lower is None:
            yield Change("/" + child, "A")
        elif below or _dir_changed(st, lower):  # podman: a directory with changes below is changed
            yield Change("/" + child, "C")
        yield from below


def _hidden(rel: str, layers: Sequence[Path], upper_dir: Path) -> Iterator[Change]:
    """An opaque directory replaced the image's: what the image had there and the upper has not
    is deleted."""
    seen: set[str] = set()
    for layer in layers:
        d = layer / rel
        if not d.is_dir():
            continue
        for name in os.listdir(d):
            if name.startswith(".wh.") or name in seen or os.path.lexists(upper_dir / name):
                continue
            seen.add(name)
            yield Change(f"/{rel}/{name}", "D")
