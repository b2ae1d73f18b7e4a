"""The library API: one Engine facade over amber's operations. The CLI only calls this."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from amber.config import Layout, Settings

if TYPE_CHECKING:
    from amber.engine.archives import ArchiveService
    from amber.engine.checkpoint import CheckpointService
    from amber.engine.containers import ContainerService
    from amber.engine.images import ImageService


class Engine:
    """Entry point of the library: `Engine.from_options().containers.run(...)` and so on."""

    def __init__(self, settings: Settings, runtime: str | None = None) -> None:
        self.settings = settings
        self.layout = Layout(settings.root, settings.runroot)
        self.runtime_choice = runtime  # the global --runtime, if given

    @classmethod
    def from_options(
        cls,
        *,
        root: str | None = None,
        runroot: str | None = None,
        config_file: str | None = None,
        runtime: str | None = None,
    ) -> Engine:
        return cls(Settings.load(root=root, runroot=runroot, config_file=config_file), runtime)

    @cached_property
    def images(self) -> ImageService:
        from amber.engine.images import ImageService

        return ImageService(self.layout)

    @cached_property
    def containers(self) -> ContainerService:
        from amber.engine.containers import ContainerService

        return ContainerService(self.layout, self.settings, self.images, self.runtime_choice)

    @cached_property
    def checkpoints(self) -> CheckpointService:
        from amber.engine.checkpoint import CheckpointService

        return CheckpointService(self.layout, self.containers, self.images)

    @cached_property
    def archives(self) -> ArchiveService:
        from amber.engine.archives import ArchiveService

        return ArchiveService(self.layout, self.images, self.containers)
