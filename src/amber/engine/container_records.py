"""A container's record and what it holds on the host, as every container operation needs them.

ContainerRecords (the base of engine/containers.py's ContainerService) knows where a container's
pieces are, its runtime and its lock; brings its record up to date with reality (the runtime's
state, conmon's exit file, recovery of interrupted work), lists and inspects it; mounts its root
and joins its network, and releases all of it (runtime state, mounts, netns, cgroup).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.adapters import cgroups, mounts, netns
from amber.adapters.state import locked
from amber.config import Settings
from amber.engine import exit_codes
from amber.engine.store import ContainerStore
from amber.errors import ConflictError, NotFoundError
from amber.layout import NAMES_LOCK, ContainerLayout, Layout
from amber.models import Container, Status

if TYPE_CHECKING:  # imported where used: `ps` and `inspect` need neither runtimes nor networks
    from amber.adapters import conmon, runtime
    from amber.adapters.podman_format import RuntimeState
    from amber.engine.attachments import Attachments
    from amber.engine.images import ImageService
    from amber.engine.networks import NetworkService
    from amber.engine.volumes import VolumeService


class ContainerRecords:
    """The containers' records and their pieces on the host (subclassed by ContainerService)."""

    def __init__(self, layout: Layout, settings: Settings, images: ImageService, runtime_choice: str | None) -> None:
        self.layout = layout
        self.settings = settings
        self.images = images
        self.runtime_choice = runtime_choice
        self.store = ContainerStore(layout)

    @cached_property
    def networks(self) -> NetworkService:
        from amber.engine.networks import NetworkService

        return NetworkService(self.layout)

    @cached_property
    def volumes(self) -> VolumeService:
        from amber.engine.volumes import VolumeService

        return VolumeService(self.layout)

    # -- helpers -------------------------------------------------------------------------------
    def paths(self, cid: str) -> ContainerLayout:
        """Where the container's pieces live (the Layout's)."""
        return self.layout.container(cid)

    def runtime_for(self, c: Container) -> runtime.Runtime:
        from amber.adapters import runtime

        info = runtime.describe(c.runtime_path) if os.path.exists(c.runtime_path) else runtime.resolve(c.runtime)
        return self.runtime_of(info)

    def runtime_of(self, info: runtime.RuntimeInfo) -> runtime.Runtime:
        from amber.adapters import runtime

        return runtime.Runtime(info, self.layout.runtime_state(info.kind))

    def runtime_state(self, c: Container) -> RuntimeState | None:
        """What the runtime reports of the container, None if it does not know it.

        Raises ArchiveError when the runtime's report has the wrong shape."""
        from amber.adapters.podman_format import RuntimeState

        rt = self.runtime_for(c)
        st = rt.state(c.id)
        return None if st is None else RuntimeState.from_dict(st, f"{rt.info.kind} state of container {c.name}")

    def choose_runtime(self, requested: str | None) -> runtime.RuntimeInfo:
        from amber.adapters import runtime

        return runtime.resolve(requested or self.runtime_choice or self.settings.default_runtime)

    def lock(self, c: Container, *, wait: bool | None = None) -> contextlib.AbstractContextManager[None]:
        """The container's lock: a mutating command waits for it (state.lock_wait()), then raises
        ConflictError naming the command that holds it; `wait=False` tries once."""
        return locked(self.layout.locks, c.id, f"container {c.name}", wait=wait)

    def lock_names(self) -> contextlib.AbstractContextManager[None]:
        """Held while a name is checked and taken, so two commands can't take the same one."""
        return locked(self.layout.locks, NAMES_LOCK, "the container names", wait=True)

    def users_of_image(self, image_id: str) -> list[str]:
        return [c.name for c in self.store.all() if c.image_id == image_id]

    # -- the container's pieces on the host ------------------------------------------------------
    def _current(self, ref: str) -> Container:
        return self.refresh(self.store.get(ref))

    def config_of(self, c: Container) -> Path:
        """The container's OCI spec (config.json)."""
        return self.paths(c.id).config_json

    def prepare_root(
        self, c: Container, *, image_layers: Sequence[Path], keep_address: tuple[bool, bool] | None = None
    ) -> None:
        """Mount the root file system, make the network namespace and join it to the
        container's network (`keep_address`: ask for the recorded IP, MAC again, a restore)."""
        p = self.paths(c.id)
        with contextlib.suppress(FileNotFoundError):
            p.exit_file.unlink()
        mounts.mount_overlay(image_layers, p.upper, p.work, p.merged)
        netns.create(p.netns)
        att = self.attachments(c)
        if att.network is None:  # loopback only: nothing to join, no network code to load
            return
        from amber.engine import attachments as attach

        if not self.networks.attachments(c.id):  # a restore from an archive prepares twice
            attach.connect(self.networks, c.id, c.name, p.netns, att, p.network_status, keep=keep_address)

    def attachments(self, c: Container) -> Attachments:
        """The container's network, ports and mounts as recorded."""
        from amber.engine import attachment_records

        return attachment_records.load(self.paths(c.id).attachments)

    def monitor_spec(self, c: Container) -> conmon.MonitorSpec:
        from amber.adapters import conmon

        p = self.paths(c.id)
        return conmon.MonitorSpec(
            cid=c.id,
            name=c.name,
            bundle=p.bundle,
            log_path=p.log,
            exit_dir=self.layout.exits,
            pidfile=p.pidfile,
            conmon_pidfile=p.conmon_pidfile,
            socket_dir=self.layout.sockets,
            exit_command=exit_codes.cleanup_command(self.layout, c.id) if c.auto_remove else (),
        )

    # -- state ---------------------------------------------------------------------------------
    def refresh(self, c: Container) -> Container:
        """Reconcile the record with reality (the runtime's state and conmon's exit file).

        The caller holds the container's lock.
        """
        if self.interrupted(c):
            from amber.engine import recovery

            c = recovery.recover(self, c)
        if c.status == Status.EXITED and (c.exit_code is None or c.exit_code < 0):
            recorded = exit_codes.recorded_exit(self.paths(c.id))
            if recorded is not None:  # conmon wrote it after we looked: never lose it
                c = dataclasses.replace(c, exit_code=recorded[0], finished=recorded[1])
                self.store.save(c)
            return c
        if c.status not in (Status.RUNNING, Status.PAUSED):
            return c
        st = self.runtime_state(c)
        if st is not None and st.alive:
            return c
        code, finished = exit_codes.exit_status(self.paths(c.id))
        c = dataclasses.replace(c, status=Status.EXITED, exit_code=code, finished=finished, pid=0)
        self.cleanup(c)
        self.store.save(c)
        return c

    def interrupted(self, c: Container) -> bool:
        """Did a checkpoint or a restore of `c` stop half way (a pending marker is there)? Asked
        here, not in recovery, so that a command on a container imports recovery only to recover."""
        return any(marker.exists() for marker in self.layout.container(c.id).pending_markers)

    def inspect_record(self, ref: str) -> Container:
        c = self.store.get(ref)
        lost_code = c.status == Status.EXITED and (c.exit_code is None or c.exit_code < 0)
        if c.status not in (Status.RUNNING, Status.PAUSED) and not lost_code and not self.interrupted(c):
            return c
        try:
            with self.lock(c, wait=False):  # a reader never waits, and never makes a writer busy
                return self.refresh(self.store.get(c.id))
        except ConflictError:
            return c  # another command is changing it right now; show what is recorded

    def list(self, *, all_containers: bool = False) -> list[Container]:
        out = []
        for c in self.store.all():
            if c.status == Status.RUNNING or self.interrupted(c):
                try:
                    c = self.inspect_record(c.id)
                except NotFoundError:
                    continue  # an interrupted restore, cleaned up just now
            if all_containers or c.status == Status.RUNNING:
                out.append(c)
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        c = self.inspect_record(ref)
        from amber.engine import attachments as attach  # once there is a container to show

        p = self.paths(c.id)
        data = c.to_dict()
        data["paths"] = {
            "bundle": str(p.bundle),
            "rootfs": str(p.merged),
            "upper": str(p.upper),
            "log": str(p.log),
            "netns": str(p.netns),
        }
        with contextlib.suppress(OSError, ValueError):
            data["spec"] = json.loads(p.config_json.read_text())
        data.update(attach.inspect_fields(self.attachments(c), self.networks.attachments(c.id), data.get("spec")))
        return data

    # -- release ---------------------------------------------------------------------------------
    def cleanup(self, c: Container) -> None:
        """Release what a container that no longer runs holds: runtime state, mounts, netns."""
        rt = self.runtime_for(c)
        if (rt.state_root / c.id).exists():  # the runtime's own directory for it (runc, crun)
            rt.delete(c.id, force=True)
        p = self.paths(c.id)
        mounts.unmount_under(p.bundle)  # a runtime killed mid-restore may leave its own there
        mounts.unmount(p.merged)
        att = self.attachments(c)
        if att.network is not None:  # else disconnect has nothing to undo (and no network code to import)
            from amber.engine import attachments as attach

            attach.disconnect(self.networks, c.id, att)
        netns.remove(p.netns)
        cgroups.remove(self.cgroups_path(c))

    def cgroups_path(self, c: Container) -> str:
        """The cgroup the container runs in, as its OCI spec says."""
        try:
            spec = json.loads(self.paths(c.id).config_json.read_text())
            value = spec["linux"]["cgroupsPath"]
            return value if isinstance(value, str) else ""
        except (OSError, ValueError, KeyError, TypeError):
            return ""
