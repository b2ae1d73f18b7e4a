"""The Engine's checkpoint-image and registry calls (a mixin of amber.Engine, engine/api.py).

eng.checkpoint("web", create_image="localhost/ckpt:1")
eng.push_image("localhost/ckpt:1", "127.0.0.1:5000/ckpt:1", tls_verify=False)
eng.pull_image("127.0.0.1:5000/ckpt:1", tls_verify=False)
c = eng.restore_image("127.0.0.1:5000/ckpt:1", name="web2")
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from amber.engine.services import Services, with_runner
from amber.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from amber.adapters import run as runners
    from amber.config import Layout
    from amber.engine.checkpoint import CheckpointOptions, Report, RestoreOptions
    from amber.engine.options import RestoreKwargs
    from amber.models import Container, Image

__all__ = ["CheckpointImageCalls"]


class CheckpointImageCalls:
    """Checkpoint images (podman's --create-image and `restore IMAGE`), push and pull."""

    services: Services
    runner: runners.Runner
    layout: Layout

    @with_runner
    def push_image(self, image: str, dest: str, *, tls_verify: bool = True) -> str:
        """Push `image` (a checkpoint image or an ordinary one, its layers packed again) to `dest`
        (HOST:PORT/NAME:TAG) with skopeo; returns the reference pushed. Raises NotFoundError (no
        image), UsageError (a bad reference), CommandError or AmberError (the registry refused,
        skopeo missing, a damaged layer)."""
        return self.services.checkpoint_images.push(image, dest, tls_verify=tls_verify)

    @with_runner
    def pull_image(self, ref: str, *, tls_verify: bool = True) -> Image:
        """Pull `ref` from its registry (a checkpoint image is kept as one). Raises UsageError (bad
        reference), CommandError or AmberError (registry, skopeo), ArchiveError (a malformed
        image), PreconditionError (not root)."""
        return self.services.checkpoint_images.pull(ref, tls_verify=tls_verify)

    def is_checkpoint_image(self, ref: str) -> bool:
        """True when `ref` names a stored checkpoint image (and no container has that name)."""
        if self.services.containers.store.find(ref) is not None:
            return False
        with contextlib.suppress(NotFoundError, UsageError):
            return self.services.layout.is_checkpoint_image(self.services.images.get(ref).id)
        return False

    def checkpoint_image_ids(self) -> set[str]:
        """Ids of the stored checkpoint images (`image ls` marks them). Raises nothing."""
        return self.services.checkpoint_images.checkpoint_ids()

    def require_runnable(self, image: str) -> None:
        """For run/create: UsageError when `image` is a checkpoint image. Raises NotFoundError."""
        found = self.services.images.get(image)
        if self.services.layout.is_checkpoint_image(found.id):
            self.services.checkpoint_images.require_runnable(found)

    @property
    def runtime_choice(self) -> str | None:
        return self.services.runtime_choice

    @with_runner
    def restore_image(self, image: str, **options: Unpack[RestoreKwargs]) -> Container:
        """A new running container from the checkpoint image `image` (`amber restore IMAGE`),
        under the runtime it records unless `runtime` (which must be able to restore it) is
        given; `options` as Engine.restore_archive's. Raises NotFoundError (no such image),
        UsageError (an ordinary image, options), RuntimeMismatchError (exit 7), and what
        Engine.restore_archive raises."""
        from amber.engine.options import check_restore, restore_options

        opts = restore_options(self.runtime_choice, **options)
        check_restore(None, opts, archive_given=True)
        return self._restore_image(image, opts)[0]

    def _restore_image(self, ref: str, opts: RestoreOptions) -> tuple[Container, Report]:
        """A new container from the checkpoint image `ref`, under the runtime it records (or
        `opts.runtime`, if that can restore it). Raises UsageError (not a checkpoint image),
        RuntimeMismatchError (exit 7: a runtime that cannot restore it), and what restoring an
        archive raises."""
        with self.services.checkpoint_images.as_archive(ref) as (ckpt, path):
            self.services.checkpoint_images.select_runtime(ckpt, opts.runtime)
            return self.services.checkpoints.restore_archive(path, opts)

    def _checkpoint_to_image(self, refs: Sequence[str], opts: CheckpointOptions, name: str) -> list[Report]:
        """Checkpoint one container into the checkpoint image `name` (and to `opts.export` when
        given). Raises UsageError (not exactly one container, a pre-checkpoint), and what
        checkpoint and create_image raise."""
        if len(refs) != 1:
            raise UsageError("--create-image takes exactly one container", hint="checkpoint one container per image")
        if opts.pre_checkpoint:
            raise UsageError("--create-image can not be used with --pre-checkpoint", hint="leave out one of them")
        self.services.images.normalize(name)  # a bad name is refused before the dump
        export, scratch = opts.export, None
        if export is None:
            self.layout.ensure()
            scratch = Path(tempfile.mkdtemp(prefix="create-image-", dir=self.layout.tmp))
            export = scratch / "checkpoint.tar"
        from amber.adapters.tar.compression import Compression  # not at import: `amber ps` needs no tar

        compression = opts.compression or (Compression.NONE if scratch else None)
        try:
            reports = self.services.checkpoints.checkpoint(
                list(refs), dataclasses.replace(opts, export=export, compression=compression)
            )
            self.services.checkpoint_images.create_image(export, name)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        if scratch is not None:
            reports = [dataclasses.replace(r, export=None) for r in reports]
        return reports
