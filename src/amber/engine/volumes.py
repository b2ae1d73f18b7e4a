"""Named volumes under the amber root, and the tar streams that carry them in archives.

A volume is a directory `<root>/volumes/<name>/` holding `volume.json` and the content, `_data/`
(what containers see, as with podman). Containers using a volume are recorded in it (`use`,
`release`), and `remove` refuses while any is recorded. `export` writes the content as a tar
stream (podman puts one per named volume at `volumes/<name>.tar` in a checkpoint archive);
`import_` recreates a volume from one, reading it as hostile input with amber's safe extractor.

`-v`/`--tmpfs` specs and their OCI mount entries are in amber.engine.mount_specs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from amber.adapters import state
from amber.config import Layout
from amber.engine import naming
from amber.errors import ConflictError, NotFoundError

ARCHIVE_DIR = "volumes"  # checkpointctl's CheckpointVolumesDirectory


def archive_member(name: str) -> str:
    """Where podman's checkpoint archives keep volume `name`: `volumes/<name>.tar`."""
    return f"{ARCHIVE_DIR}/{name}.tar"


@dataclass(frozen=True)
class Volume:
    name: str
    created: str
    mountpoint: str
    users: tuple[str, ...] = field(default=())  # ids of the containers using it
    anonymous: bool = False  # made for one container's `-v /path`; removed with it on rm -v / --rm

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "mountpoint": self.mountpoint,
            "users": list(self.users),
            "anonymous": self.anonymous,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Volume:
        return cls(
            name=str(d["name"]),
            created=str(d.get("created", "")),
            mountpoint=str(d["mountpoint"]),
            users=tuple(str(u) for u in d.get("users") or []),
            anonymous=bool(d.get("anonymous", False)),
        )

    def inspect(self) -> dict[str, Any]:
        """podman's `volume inspect` keys."""
        return {
            "Name": self.name,
            "Driver": "local",
            "Mountpoint": self.mountpoint,
            "CreatedAt": self.created,
            "Labels": {},
            "Scope": "local",
            "Options": {},
            "UsedBy": list(self.users),
            "Anonymous": self.anonymous,
        }


class VolumeService:
    """The named volumes of one amber root."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    @classmethod
    def from_layout(cls, layout: Layout) -> VolumeService:
        return cls(layout)

    def _meta(self, name: str) -> Path:
        return self.layout.volume_dir(name) / "volume.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with state.locked(self.layout.locks, "volumes", "amber's volumes", wait=True):
            yield

    def exists(self, name: str) -> bool:
        return self._meta(name).is_file()

    def get(self, name: str) -> Volume:
        """Raises NotFoundError."""
        naming.check_name(name)
        if not self.exists(name):
            raise NotFoundError(f"no such volume: {name}", hint="amber volume ls lists them")
        return Volume.from_dict(state.read_json(self._meta(name)))

    def list(self) -> list[Volume]:
        base = self.layout.volumes_dir
        if not base.is_dir():
            return []
        return [self.get(p.parent.name) for p in sorted(base.glob("*/volume.json"))]

    def create(self, name: str, *, exist_ok: bool = False, anonymous: bool = False) -> Volume:
        """Make an empty volume (`anonymous`: a container's `-v /path`). Raises UsageError (bad
        name), ConflictError (exists)."""
        naming.check_name(name)
        with self._locked():
            if self.exists(name):
                if exist_ok:
                    return self.get(name)
                raise ConflictError(f"volume {name} already exists", hint="pick another name, or amber volume rm it")
            return self._make(self.layout.volume_dir(name), name, anonymous)

    def _make(self, directory: Path, name: str, anonymous: bool = False) -> Volume:
        data = directory / "_data"
        data.mkdir(parents=True, exist_ok=True, mode=0o755)
        os.chmod(directory, 0o700)
        volume = Volume(
            name=name,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            mountpoint=str(self.layout.volume_data(name)),
            anonymous=anonymous,
        )
        state.atomic_write_json(directory / "volume.json", volume.to_dict())
        return volume

    def remove(self, name: str, *, is_live: Callable[[str], bool] | None = None) -> Volume:
        """Remove a volume and its content. Refused while a container uses it; users that
        `is_live` says are gone no longer count.

        Raises NotFoundError, ConflictError."""
        with self._locked():
            volume = self.get(name)
            users = [u for u in volume.users if is_live is None or is_live(u)]
            if users:
                raise ConflictError(
                    f"volume {name} is in use by container(s) {', '.join(u[:12] for u in users)}",
                    hint="remove those containers (amber rm) first",
                )
            directory = self.layout.volume_dir(name)
            self._meta(name).unlink()
            shutil.rmtree(directory, ignore_errors=True)
        return volume

    def use(self, name: str, container_id: str) -> Volume:
        """Record that a container uses the volume. Raises NotFoundError."""
        return self._set_users(name, lambda users: users | {container_id})

    def release(self, name: str, container_id: str) -> Volume | None:
        """Forget that a container uses the volume (None when the volume is gone already)."""
        if not self.exists(name):
            return None
        return self._set_users(name, lambda users: users - {container_id})

    def _set_users(self, name: str, change: Callable[[set[str]], set[str]]) -> Volume:
        with self._locked():
            volume = self.get(name)
            updated = replace(volume, users=tuple(sorted(change(set(volume.users)))))
            state.atomic_write_json(self._meta(name), updated.to_dict())
            return updated

    # ------------------------------------------------------------ tar streams
    def export(self, name: str, out: IO[bytes]) -> None:
        """Write the volume's content to `out` as an uncompressed tar: the root as `./`, then
        every entry by relative name, directories before their contents (podman's layout).

        Raises NotFoundError."""
        from amber.adapters.tar.writer import TarWriter  # the tar engine only when a volume moves

        data = self.layout.volume_data(self.get(name).name)
        writer = TarWriter(out)
        writer.add(str(data), "./")
        with os.scandir(data) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            writer.add_tree(entry.path, entry.name)
        writer.close()

    def import_(self, name: str, source: IO[bytes], *, archive_name: str, anonymous: bool = False) -> Volume:
        """Make volume `name` from a tar stream (podman's `volumes/<name>.tar`).

        The stream is hostile input: amber's extractor refuses escapes, links out, devices and
        FIFOs. On any failure no volume is left. Raises UsageError (bad name), ConflictError
        (the volume exists), ArchiveError (a bad or hostile stream)."""
        from amber.adapters.tar.extract import extract
        from amber.adapters.tar.policy import Policy

        naming.check_name(name)
        base = self.layout.volumes_dir
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            if self.exists(name):
                raise ConflictError(
                    f"volume {name} already exists", hint="remove it (amber volume rm) before importing it again"
                )
            staging = Path(tempfile.mkdtemp(dir=base, prefix=f".import-{name}-"))
            try:
                volume = self._make(staging, name, anonymous)
                # The volume's `./` entry carries its root's mode and owner (a database's 0700).
                extract(source, staging / "_data", Policy(keep_owner=True, root_entry=True), archive=archive_name)
                staging.rename(self.layout.volume_dir(name))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return volume
