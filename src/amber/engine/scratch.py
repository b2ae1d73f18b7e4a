"""Where CRIU's images live while an archive is made or unpacked: memory when it fits, else disk.

Images that only pass through (dumped then archived, or unpacked then restored) need not touch
the disk: on a tmpfs (/dev/shm) they are written and read at memory speed. The tmpfs is used only
when the images fit with room to spare, in it and in the host's available memory; otherwise the
work area is amber's tmp directory on disk.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from amber.adapters.podman_format import OTHER_SIZE, AmberManifest
from amber.layout import SHM, Layout

KEEP_FREE = 1 << 30  # memory left to the host after the images are in
SLACK = 64 << 20  # beyond the declared sizes (archives of amber before OTHER_SIZE: their logs, stats)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _shm_free() -> int:
    try:
        st = os.statvfs(SHM)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def shm_base(layout: Layout) -> Path:
    """This amber root's own directory on the tmpfs."""
    return layout.shm


def fits_in_memory(need: int) -> bool:
    return need > 0 and need * 5 // 4 + KEEP_FREE < min(_shm_free(), _available_memory())


def work_dir(layout: Layout, prefix: str, need: int) -> Path:
    """A fresh private directory for `need` bytes of images: on tmpfs if they fit, else on disk."""
    if fits_in_memory(need):
        base = shm_base(layout)
        base.mkdir(mode=0o700, exist_ok=True)
        if base.is_dir() and not base.is_symlink() and base.stat().st_uid == 0:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    layout.tmp.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=layout.tmp))


def declared_size(manifest: AmberManifest | None) -> int:
    """The bytes an archive's amber.manifest says it unpacks to (images + rootfs diff), 0 when it
    has none (podman's archives): such an archive is unpacked on disk."""
    if manifest is None or manifest.sizes is None:
        return 0
    sizes = manifest.sizes
    other = sizes.extra.get(OTHER_SIZE, 0)
    other = other if isinstance(other, int) and not isinstance(other, bool) and other > 0 else 0
    return max(sizes.checkpoint or 0, 0) + max(sizes.rootfs_diff or 0, 0) + other


def in_memory(layout: Layout, path: Path) -> bool:
    """Is the work directory `path` on the tmpfs (so bounded by what was declared for it)?"""
    return path.parent == shm_base(layout)


def is_scratch(layout: Layout, path: Path) -> bool:
    """Is `path` a work directory made by work_dir (and so safe to remove)?"""
    return path.parent in (layout.tmp, shm_base(layout))


def container_memory(cgroups_path: str) -> int:
    """Bytes of memory a container's cgroup uses now (cgroup v1 or v2), 0 if unknown."""
    rel = cgroups_path.lstrip("/")
    for candidate in (
        Path("/sys/fs/cgroup/memory") / rel / "memory.usage_in_bytes",
        Path("/sys/fs/cgroup") / rel / "memory.current",
    ):
        try:
            return int(candidate.read_text().strip())
        except (OSError, ValueError):
            continue
    return 0


def discard(path: Path) -> None:
    """Remove a work directory, and its tmpfs parent once that is empty."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    if path.parent.parent == SHM and path.parent.name.startswith("amber-"):
        try:
            path.parent.rmdir()
        except OSError:
            pass  # another command's work is still there
