"""The Engine's podman-shaped views (a mixin of amber.Engine, engine/api.py): `inspect` with
podman's fields, `ps` with podman's filters, `--latest`, and checkpointctl's `list` and `diff`.

eng.inspect("web")["State"]["Checkpointed"]
eng.ps(all=True, filters=["status=exited", "name=web"])
eng.latest().id
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from amber.engine.services import Services, with_runner

if TYPE_CHECKING:
    import os

    from amber.adapters import run as runners
    from amber.adapters.netavark import PortMapping
    from amber.config import Layout
    from amber.engine.archive_list import ListedArchive
    from amber.engine.archive_models import ArchiveDiff
    from amber.models import Container

    PathLike = str | os.PathLike[str]

__all__ = ["PodmanViewCalls"]


class PodmanViewCalls:
    """inspect, ps, ports, latest, list_archives, diff_archives."""

    services: Services
    runner: runners.Runner
    layout: Layout

    @with_runner
    def inspect(self, container: str) -> dict[str, Any]:
        """A container's record, paths and OCI spec (`amber inspect`), with podman's inspect
        fields (Id, Name, State, Config, ...) beside them. Raises NotFoundError."""
        from amber.engine.podman_view import inspect_view
        from amber.models import Container

        data = self.services.containers.inspect(container)
        c = Container.from_dict(data)
        spec = data.get("spec")
        data.update(inspect_view(c, self.layout.container(c.id), spec if isinstance(spec, dict) else {}))
        return data

    @with_runner
    def latest(self) -> Container:
        """The container created last (podman's --latest). Raises NotFoundError (none)."""
        from amber.errors import NotFoundError

        found = self.services.containers.list(all_containers=True)
        if not found:
            raise NotFoundError("no containers to choose the latest of", hint="amber ps -a lists the containers")
        return max(found, key=lambda c: c.created)

    @with_runner
    def ps(self, *, all: bool = False, filters: Sequence[str] = ()) -> list[Container]:
        """The containers `amber ps` lists: the running ones (`all`: every one), those matching
        every `filters` key (name=, id=, status=, label=, ancestor=; one key's values OR'ed).
        Raises UsageError (unknown filter)."""
        from amber.engine.podman_view import matches, parse_filters

        parsed = parse_filters(list(filters))
        found = self.services.containers.list(all_containers=all or "status" in parsed)
        return [c for c in found if matches(c, parsed)]

    @with_runner
    def ports(self, container: Container) -> tuple[PortMapping, ...]:
        """The host ports `container` publishes, as it was asked to (`ps`'s PORTS). Raises
        nothing for a container without networks (an empty tuple)."""
        return self.services.containers.attachments(container).ports

    @with_runner
    def list_archives(self, directories: Iterable[PathLike] = ()) -> list[ListedArchive]:
        """The `checkpoint-*` archives in `directories` (default /var/lib/kubelet/checkpoints),
        each with its summary or its error (`amber archive list`). Raises nothing."""
        from amber.engine.archive_list import list_archives
        from amber.engine.options import as_path

        return list_archives(self.services.archives, [as_path(d) for d in directories])

    @with_runner
    def diff_archives(
        self,
        a: PathLike,
        b: PathLike,
        *,
        ps_tree_cmd: bool = True,
        ps_tree_env: bool = False,
        files: bool = True,
        sockets: bool = True,
    ) -> ArchiveDiff:
        """What changed between two checkpoints (`amber archive diff`, checkpointctl's flags:
        command lines, environments, open files, sockets). Raises NotFoundError, ArchiveError."""
        from amber.engine.options import as_path

        return self.services.archives.diff(
            as_path(a), as_path(b), ps_tree_cmd=ps_tree_cmd, ps_tree_env=ps_tree_env, files=files, sockets=sockets
        )
