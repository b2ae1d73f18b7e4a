"""Checkpoint images in amber's image store, and moving images through registries.

A checkpoint image is stored like any image (its one layer under layers/, its record under
images/), plus a marker `images/checkpoints/<id>.json` holding its CheckpointAnnotations. The
marker is what lets `image ls` show it, `run` refuse it, and restore find its runtime: the runtime
rule is the archives' one (engine/runtime_rule.py), applied to the recorded runtime.

Registries are reached through skopeo: push writes a fresh OCI layout of the stored checkpoint
(podman's shape, all three annotation sets) or of an ordinary image (its extracted layers packed
again by adapters/layer_pack.py) and copies it; pull copies into a private OCI layout
and imports it through ImageService.import_image, marking it when its annotations say it is a
checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from amber import __version__
from amber.adapters import checkpoint_archive as archive
from amber.adapters import checkpoint_image, image_sources, layer_pack, oci_layout, skopeo
from amber.adapters import runtime as runtimes
from amber.adapters.checkpoint_image import CheckpointAnnotations
from amber.adapters.runtime import RuntimeInfo
from amber.adapters.state import atomic_write_json, read_json
from amber.config import Layout
from amber.engine.images import ImageService, image_id, normalize_name
from amber.engine.runtime_rule import recorded_kind, select_runtime
from amber.errors import AmberError, ArchiveError, UsageError, require_root
from amber.models import Image, ImageConfig

log = logging.getLogger("amber.checkpoint_images")

PULL_TAG = "pulled"


@dataclass(frozen=True)
class CheckpointImage:
    image: Image
    annotations: CheckpointAnnotations

    @property
    def runtime(self) -> str:
        """The runtime that wrote the checkpoint, as the runtime rule names it (crun, runc)."""
        return recorded_kind(self.annotations.runtime) if self.annotations.runtime else ""


def _tag_of(ref: str) -> str:
    name = ref.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[colon + 1 :] if colon > slash else "latest"


def remote_ref(ref: str) -> str:
    """A registry reference as given (`HOST[:PORT]/NAME[:TAG]`, `docker://` optional), completed as
    podman does: a name without a registry host is on docker.io; without a tag, :latest."""
    bare = ref.removeprefix(skopeo.DOCKER)
    if not bare or any(c.isspace() for c in bare):
        raise UsageError(f"invalid image reference {ref!r}", hint="give HOST:PORT/NAME:TAG, e.g. 127.0.0.1:5000/cnt:1")
    first, sep, _ = bare.partition("/")
    if not (sep and ("." in first or ":" in first or first == "localhost")):
        bare = f"docker.io/{bare}" if sep else f"docker.io/library/{bare}"
    name = bare.split("@", 1)[0]
    if "@" not in bare and name.rfind(":") <= name.rfind("/"):
        bare += ":latest"
    return bare


class CheckpointImages:
    """Checkpoint images next to the ordinary ones, and push/pull through registries."""

    def __init__(self, layout: Layout, images: ImageService) -> None:
        self.layout = layout
        self.images = images

    # -- markers -------------------------------------------------------------------------------
    def _marker(self, iid: str) -> Path:
        return self.layout.checkpoint_image_marker(iid)

    def _mark_id(self, iid: str, annotations: CheckpointAnnotations) -> None:
        path = self._marker(iid)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_json(path, {"id": iid, "annotations": annotations.to_dict()})

    def checkpoint_ids(self) -> set[str]:
        """Ids of the stored images that are checkpoint images (for `image ls` to mark them)."""
        where = self.layout.checkpoint_image_markers
        return {p.stem for p in where.glob("*.json")} if where.is_dir() else set()

    def annotations_of(self, image: Image) -> CheckpointAnnotations | None:
        """The checkpoint annotations of a stored image; None for an ordinary image."""
        try:
            record = read_json(self._marker(image.id))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ArchiveError(
                f"the checkpoint record of image {image.name} is unreadable: {exc}",
                hint=f"remove the image (amber rmi {image.name}) and create or pull it again",
            ) from exc
        ann = record.get("annotations") if isinstance(record, dict) else None
        return CheckpointAnnotations.from_dict(ann if isinstance(ann, dict) else {})

    def is_checkpoint(self, image: Image) -> bool:
        return self.layout.is_checkpoint_image(image.id)

    def get(self, ref: str) -> CheckpointImage:
        """A stored checkpoint image by name or id. UsageError when the image is an ordinary one."""
        image = self.images.get(ref)
        ann = self.annotations_of(image)
        if ann is None:
            raise UsageError(
                f"image {image.name} is not a checkpoint image",
                hint="make one from a checkpoint archive, or pull one from a registry",
            )
        return CheckpointImage(image, ann)

    def require_runnable(self, image: Image) -> None:
        """For `run`/`create`: UsageError when `image` is a checkpoint image."""
        ann = self.annotations_of(image)
        if ann is not None:
            raise UsageError(
                f"image {image.name} is a checkpoint image (of container {ann.name}), not a root filesystem: "
                "it cannot be run",
                hint=f"restore it instead: amber restore {image.name}",
            )

    def forget(self, iid: str) -> None:
        """Drop the checkpoint marker of an image that was removed."""
        self._marker(iid).unlink(missing_ok=True)

    def select_runtime(self, ckpt: CheckpointImage, requested: str | None) -> RuntimeInfo:
        """The runtime to restore the image with; RuntimeMismatchError (exit 7) for a wrong one."""
        return select_runtime(ckpt.annotations.runtime, requested, f"image {ckpt.image.name}")

    # -- create ---------------------------------------------------------------------------------
    def create_image(self, archive_path: Path, name: str) -> CheckpointImage:
        """Store the checkpoint archive `archive_path` as the checkpoint image NAME.

        Raises ArchiveError for a bad archive, UsageError for a bad name, PreconditionError
        when not root.
        """
        require_root("creating a checkpoint image")
        ref = normalize_name(name)
        head = archive.read_head(archive_path)
        annotations = checkpoint_image.from_head(
            head, engine_version=__version__, runtime_version=_runtime_version(head.config_dump.runtime)
        )
        self.layout.ensure()
        with oci_layout.work_dir(self.layout.tmp, "create-") as work:
            written = oci_layout.write_layout(archive_path, work / "oci", annotations, tmp_dir=work, tag=_tag_of(ref))
            return self._store(work / "oci", ref, annotations, expected=image_id([written.layer.digest], ImageConfig()))

    def _store(
        self, layout_dir: Path, ref: str, annotations: CheckpointAnnotations, *, expected: str | None = None
    ) -> CheckpointImage:
        """Import the checkpoint image at `layout_dir` and mark it.

        With the id it will get (`expected`), the marker is written first, so a crash never leaves
        a checkpoint image that looks ordinary; otherwise a failed marking removes the image again.
        """
        if expected is not None:
            self._mark_id(expected, annotations)
        try:
            image = self.images.import_image(layout_dir, ref)
            if image.id != expected:
                self._mark_id(image.id, annotations)
        except BaseException:
            if expected is not None and not self.images.exists(expected):
                self.forget(expected)
            raise
        if expected is not None and image.id != expected and not self.images.exists(expected):
            self.forget(expected)
        return CheckpointImage(image, annotations)

    def import_image(self, source: Path, name: str) -> Image:
        """`amber image import` that knows checkpoint images: an OCI layout or oci-archive whose
        annotations mark a checkpoint is stored as one; anything else goes to ImageService as is."""
        require_root("importing an image")
        self.layout.ensure()
        with image_sources.open_source(source, self.layout.tmp) as src:
            kind = src.kind
        if kind not in (image_sources.SourceKind.OCI_LAYOUT, image_sources.SourceKind.OCI_ARCHIVE):
            return self.images.import_image(source, name)
        ref = normalize_name(name)
        with oci_layout.open_layout(source, tmp_dir=self.layout.tmp) as layout:
            if not layout.is_checkpoint:
                return self.images.import_image(source, ref)
            annotations = layout.annotations
            oci_layout.checkpoint_layer(layout)  # one readable layer, or refuse before importing
            return self._store(layout.root, ref, annotations).image

    # -- back to an archive ---------------------------------------------------------------------
    def archive_of(self, ckpt: CheckpointImage | Image, dest: Path | None = None, *, compression: str = "none") -> Path:
        """Write the stored checkpoint as an archive that restore takes. The caller removes it.

        Default place: a new file under amber's tmp dir. Raises UsageError for an ordinary image.
        """
        image = ckpt.image if isinstance(ckpt, CheckpointImage) else ckpt
        if self.annotations_of(image) is None:
            raise UsageError(f"image {image.name} is not a checkpoint image", hint="give a checkpoint image")
        self.layout.ensure()
        if dest is None:
            dest = self.layout.tmp / f"checkpoint-{image.id[:12]}-{secrets.token_hex(4)}.tar"
        with self.images.lock():
            (layer,) = self.images.layer_dirs(image)
            oci_layout.archive_from_dir(layer, dest, compression=archive.Compression.parse(compression))
        return dest

    @contextlib.contextmanager
    def as_archive(self, ref: str) -> Iterator[tuple[CheckpointImage, Path]]:
        """For `amber restore IMAGE`: the checkpoint image and an archive of it, removed afterwards."""
        ckpt = self.get(ref)
        path = self.archive_of(ckpt)
        try:
            yield ckpt, path
        finally:
            path.unlink(missing_ok=True)

    # -- registries -----------------------------------------------------------------------------
    def push(self, name: str, dest: str, *, tls_verify: bool = True, timeout: float = skopeo.DEFAULT_TIMEOUT) -> str:
        """Push the image NAME (a checkpoint image, or an ordinary one) to DEST (`HOST:PORT/NAME:TAG`).

        An ordinary image's stored layers are packed again into OCI layer tars (the same bytes
        every time, their digests recorded next to the layers). Returns the reference pushed.
        Raises NotFoundError (no image), AmberError (the registry, a damaged layer).
        """
        image = self.images.get(name)
        ann = self.annotations_of(image)
        target = remote_ref(dest)
        self.layout.ensure()
        with oci_layout.work_dir(self.layout.tmp, "push-") as work:
            with self.images.lock():
                dirs = self.images.layer_dirs(image)
                if ann is not None:
                    (layer,) = dirs
                    written = oci_layout.write_layout_from_dir(
                        layer, work / "oci", ann, tag="push", created=image.created
                    )
                else:
                    written = self._pack_ordinary(image, dirs, work / "oci")
            skopeo.copy(
                skopeo.oci_ref(written.path, written.tag),
                skopeo.docker_ref(target),
                tls_verify=tls_verify,
                timeout=timeout,
            )
        return target

    def _pack_ordinary(self, image: Image, dirs: list[Path], dest: Path) -> oci_layout.WrittenLayout:
        """The OCI layout of an ordinary image (the caller holds the images lock)."""
        try:
            written, packed = layer_pack.write_image_layout(dirs, dest, image.config, tag="push", created=image.created)
        except OSError as exc:
            raise AmberError(
                f"image {image.name}: cannot read its stored layer {exc.filename or ''}: {exc.strerror}",
                hint=f"the store is damaged: remove the image (amber rmi {image.name}) and import it again",
            ) from exc
        for diff_id, desc in zip(image.layers, packed, strict=True):
            self.images.record_packed(diff_id, desc.digest)
        return written

    def pull(self, ref: str, *, tls_verify: bool = True, timeout: float = skopeo.DEFAULT_TIMEOUT) -> Image:
        """Pull REF from its registry into the store (checkpoint images are marked as such).

        The image is named as pulled, e.g. 127.0.0.1:5000/cnt:1.
        """
        require_root("pulling an image")
        source = remote_ref(ref)
        name = normalize_name(source)
        repo_digest = _repo_digest(source, tls_verify=tls_verify, timeout=timeout)
        self.layout.ensure()
        with oci_layout.work_dir(self.layout.tmp, "pull-") as work:
            skopeo.copy(
                skopeo.docker_ref(repo_digest or source),
                skopeo.oci_ref(work / "oci", PULL_TAG),
                tls_verify=tls_verify,
                timeout=timeout,
            )
            layout = oci_layout.read_layout_dir(work / "oci", tag=PULL_TAG, source=Path(source))
            if not layout.is_checkpoint:
                return self.images.import_image(work / "oci", name, repo_digest=repo_digest)
            annotations = layout.annotations
            oci_layout.checkpoint_layer(layout)  # one readable layer, or refuse before importing
            return self._store(work / "oci", name, annotations).image


def _repo_digest(source: str, *, tls_verify: bool, timeout: float) -> str:
    """NAME@sha256:DIGEST of the manifest the registry serves for `source` (what containerd pulls
    a checkpoint's base image by: config.dump rootfsImageRef); the source itself when it has a
    digest already. Raises what skopeo.inspect raises."""
    if "@" in source:
        return source
    digest = skopeo.inspect(skopeo.docker_ref(source), tls_verify=tls_verify, timeout=timeout).get("Digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return ""
    slash, colon = source.rfind("/"), source.rfind(":")
    return (source[:colon] if colon > slash else source) + "@" + digest


def _runtime_version(recorded: object) -> str:
    """The version of the installed runtime of that name, when there is one (for the annotations)."""
    if not isinstance(recorded, str) or not recorded:
        return ""
    path = runtimes.locate(recorded_kind(recorded))
    if path is None:
        return ""
    try:
        return runtimes.describe(path).version
    except (AmberError, OSError) as exc:
        log.debug("no version for runtime %s: %s", recorded, exc)
        return ""


__all__ = ["CheckpointImage", "CheckpointImages", "remote_ref"]
