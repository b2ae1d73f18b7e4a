"""What sits behind the Engine facade: the per-area services, and running with the engine's runner."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

from amber.adapters import probe_cache
from amber.adapters import run as runners
from amber.config import Layout, Settings

if TYPE_CHECKING:
    from amber.engine.archives import ArchiveService
    from amber.engine.checkpoint import CheckpointService
    from amber.engine.checkpoint_images import CheckpointImages
    from amber.engine.containers import ContainerService
    from amber.engine.images import ImageService
    from amber.engine.networks import NetworkService
    from amber.engine.volumes import VolumeService

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Services:
    """The engine's services (images, containers, checkpoints, archives), built on first use.

    For amber's own layers and tests; library users call `Engine`'s methods.
    """

    def __init__(self, settings: Settings, runtime_choice: str | None = None) -> None:
        self.settings = settings
        self.layout = Layout(settings.root, settings.runroot)
        self.runtime_choice = runtime_choice  # the global --runtime, if given
        probe_cache.configure(self.layout.probes)  # runtime and CRIU facts, asked once per binary

    @cached_property
    def images(self) -> ImageService:
        from amber.engine.images import ImageService

        return ImageService(self.layout)

    @cached_property
    def containers(self) -> ContainerService:
        from amber.engine.containers import ContainerService

        return ContainerService(self.layout, self.settings, self.images, self.runtime_choice)

    @cached_property
    def networks(self) -> NetworkService:
        from amber.engine.networks import NetworkService

        return NetworkService.from_layout(self.layout)

    @cached_property
    def volumes(self) -> VolumeService:
        from amber.engine.volumes import VolumeService

        return VolumeService.from_layout(self.layout)

    @cached_property
    def checkpoint_images(self) -> CheckpointImages:
        from amber.engine.checkpoint_images import CheckpointImages

        return CheckpointImages(self.layout, self.images)

    @cached_property
    def checkpoints(self) -> CheckpointService:
        from amber.engine.checkpoint import CheckpointService

        return CheckpointService(self.layout, self.containers, self.images)

    @cached_property
    def archives(self) -> ArchiveService:
        from amber.engine.archives import ArchiveService

        return ArchiveService(self.layout, self.images, self.containers)


class HasRunner(Protocol):
    runner: runners.Runner


E = TypeVar("E", bound=HasRunner)


def with_runner(method: Callable[Concatenate[E, P], R]) -> Callable[Concatenate[E, P], R]:
    """Run the method with the engine's runner as the one every adapter uses."""

    @functools.wraps(method)
    def wrapper(self: E, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with runners.using(self.runner):
            return method(self, *args, **kwargs)

    return wrapper


def iterate_with(runner: runners.Runner, items: Iterator[T]) -> Iterator[T]:
    """`items`, each one produced with `runner` installed (and not while the caller holds it)."""
    while True:
        with runners.using(runner):
            try:
                item = next(items)
            except StopIteration:
                return
        yield item
