"""The image store: import (content-addressed layers), list, look up, remove.

On disk, under amber's root:

    layers/<diff_id>/        one layer, extracted in overlayfs lower-layer format
    layers/<diff_id>.json    {"diff_id", "size", "tar_size"; "packed_digest" once pushed}
    images/<id>.json         the Image record

A layer is named by the sha256 of its uncompressed tar, so the same layer is stored once however
many images use it. An image's id is the sha256 of a canonical JSON of its layer digests and its
config (no timestamps): importing the same content twice gives the same image, and the second
import only adds the name. Records change under the `images` lock.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters.state import atomic_write_json, locked, read_json
from amber.config import Layout
from amber.errors import AmberError, ArchiveError, ConflictError, NotFoundError, UsageError, require_root
from amber.models import Image, ImageConfig

if TYPE_CHECKING:  # the import machinery is loaded by the calls that import or remove images
    from amber.adapters import image_sources, layers

log = logging.getLogger("amber.images")

DEFAULT_DOMAIN = "localhost"
DEFAULT_TAG = "latest"
NOT_FOUND_HINT = "amber images lists them; import one with: amber image import ROOTFS.tar NAME"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_RE = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?")
PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
HEX_RE = re.compile(r"[0-9a-f]+")
MAX_NAME = 255


@dataclass(frozen=True)
class ImageRemoval:
    """What `ImageService.remove_image` did."""

    image: Image  # the image as it is now: untagged (still stored), or as it was before deletion
    untagged: list[str]  # names it lost
    deleted: bool  # the image and the layers no other image uses are gone
    containers: list[str]  # containers removed with it (force)


UsersOf = Callable[[str], Sequence[str]]  # image id -> names of the containers using the image


@dataclass(frozen=True)
class StoredLayer:
    digest: str  # sha256 hex of the uncompressed tar
    size: int  # bytes of regular-file content
    new: bool  # False when the store already had it


# -- names -------------------------------------------------------------------------------------


def _invalid(name: str, why: str) -> UsageError:
    return UsageError(
        f"invalid image name {name!r}: {why}",
        hint="use NAME[:TAG] in lower case, e.g. busybox or localhost/busybox:fixture",
    )


def normalize_name(name: str) -> str:
    """`busybox` -> `localhost/busybox:latest`; a name with a domain, tag or digest is kept."""
    if not name or name != name.strip() or any(c.isspace() for c in name):
        raise _invalid(name, "empty or contains white space")
    rest, _, digest = name.partition("@")
    if digest and not DIGEST_RE.fullmatch(digest):
        raise _invalid(name, f"{digest!r} is not a digest (ALGORITHM:HEX)")
    tag = ""
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.fullmatch(tag):
            raise _invalid(name, f"{tag!r} is not a valid tag")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == DEFAULT_DOMAIN):
        domain, path = first, remainder
        if not DOMAIN_RE.fullmatch(domain):
            raise _invalid(name, f"{domain!r} is not a valid registry host")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if not PATH_RE.fullmatch(path):
        raise _invalid(name, f"{path!r} must be lower-case letters, digits and separators (. _ - /)")
    if re.fullmatch(r"[0-9a-f]{64}", path):
        raise _invalid(name, "a 64-hex name would be mistaken for an image id")
    repo = f"{domain}/{path}"
    if len(repo) > MAX_NAME:
        raise _invalid(name, f"longer than {MAX_NAME} characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return repo + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def image_id(diff_ids: Sequence[str], config: ImageConfig) -> str:
    """sha256 of a canonical JSON of the layers and the config: no timestamps, so it is stable."""
    doc = {"layers": [f"sha256:{d}" for d in diff_ids], "config": dataclasses.asdict(config)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the service --------------------------------------------------------------------------------


class ImageService:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def normalize(self, name: str) -> str:
        return normalize_name(name)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while records or layers change (and by anyone who must not see a layer vanish)."""
        return locked(self.layout.locks, "images", "the image store", wait=True)

    # -- import ----------------------------------------------------------------------------------
    def import_image(self, source: Path, name: str, *, repo_digest: str = "") -> Image:
        """Import SOURCE (rootfs tarball, OCI layout dir, oci-archive, docker save) as NAME.

        The config blob's digest is kept (podman's and containerd's ID for the image), and
        `repo_digest` (NAME@sha256:MANIFEST, for a pull) when given.

        Raises UsageError for an invalid NAME, NotFoundError for a missing SOURCE, ArchiveError
        for a malformed or hostile one, PreconditionError when not root.
        """
        require_root("importing an image")
        ref = self.normalize(name)
        self.layout.ensure()
        with self.lock():
            from amber.adapters import image_sources, layers

            layers.discard_stale(self.layout.layers)
            layers.discard_stale(self.layout.tmp, image_sources.UNPACK_PREFIX)
            with image_sources.open_source(Path(source), self.layout.tmp) as src:
                if not src.layers:
                    raise ArchiveError(
                        f"{source} holds an image without layers",
                        hint="an image needs at least one layer; export it again",
                    )
                stored = [self._store_layer(layer) for layer in src.layers]
                config, created, config_digest = src.config, src.created, src.config_digest
            digests = [s.digest for s in stored]
            iid = image_id(digests, config)
            existing = self._load(iid)
            self._untag_others(ref, keep=iid)
            if existing is not None:
                names = existing.names if ref in existing.names else [*existing.names, ref]
                image = dataclasses.replace(
                    existing,
                    names=names,
                    config_digest=existing.config_digest or config_digest,
                    repo_digest=repo_digest or existing.repo_digest,
                )
            else:
                image = Image(
                    id=iid,
                    names=[ref],
                    layers=digests,
                    created=created or _now(),
                    size=sum(s.size for s in stored),
                    config=config,
                    config_digest=config_digest,
                    repo_digest=repo_digest,
                )
            self._save(image)
            return image

    def _store_layer(self, layer: image_sources.LayerSource) -> StoredLayer:
        if layer.diff_id and self._layer_dir(layer.diff_id).is_dir():
            return StoredLayer(layer.diff_id, self._layer_size(layer.diff_id), new=False)
        from amber.adapters import layers

        with layer.open() as raw:
            extracted = layers.extract_layer(raw, self.layout.layers, label=layer.label)
        try:
            _verify(layer, extracted)
            dest = self._layer_dir(extracted.diff_id)
            atomic_write_json(
                dest.with_name(dest.name + ".json"),
                {
                    "diff_id": f"sha256:{extracted.diff_id}",
                    "size": extracted.size,
                    "tar_size": extracted.tar_size,
                },
            )
        except BaseException:
            layers.discard(extracted.path)
            raise
        new = layers.commit_layer(extracted, dest)
        log.debug("layer %s %s", extracted.diff_id[:12], "stored" if new else "already present")
        return StoredLayer(extracted.diff_id, extracted.size, new)

    def _untag_others(self, ref: str, keep: str) -> None:
        for other in self.list():
            if other.id != keep and ref in other.names:
                self._save(dataclasses.replace(other, names=[n for n in other.names if n != ref]))

    def record_packed(self, diff_id: str, packed: str) -> None:
        """Note in layers/<diff_id>.json the digest the layer had when packed for a push (the
        caller holds the lock). A layer imported from amber's own push has the same two."""
        path = self._layer_dir(diff_id).with_name(f"{diff_id}.json")
        try:
            record = read_json(path)
        except (OSError, ValueError):
            record = {"diff_id": f"sha256:{diff_id}"}
        if isinstance(record, dict) and record.get("packed_digest") != f"sha256:{packed}":
            atomic_write_json(path, {**record, "packed_digest": f"sha256:{packed}"})

    # -- queries ---------------------------------------------------------------------------------
    def list(self) -> list[Image]:
        """Every image, newest first."""
        images: list[Image] = []
        if not self.layout.images.is_dir():
            return images
        for path in self.layout.images.glob("*.json"):
            if path.name.startswith("."):
                continue
            try:
                images.append(Image.from_dict(read_json(path)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable image record %s: %s", path, exc)
        return sorted(images, key=lambda i: (i.created, i.id), reverse=True)

    def get(self, ref: str) -> Image:
        """An image by name (as given or normalized), full id, or unique id prefix of 4+ hex digits.

        Raises NotFoundError when there is none, UsageError when an id prefix is ambiguous.
        """
        return self._resolve(ref)[0]

    def exists(self, iid: str) -> bool:
        return self._load(iid) is not None

    def _resolve(self, ref: str) -> tuple[Image, str | None]:
        """The image `ref` names, and the name it matched (None when matched by id)."""
        images = self.list()
        names = [ref]
        with contextlib.suppress(UsageError):
            names.append(normalize_name(ref))
        for name in names:
            for image in images:
                if name in image.names:
                    return image, name
        hexid = ref.removeprefix("sha256:")
        if len(hexid) >= 4 and HEX_RE.fullmatch(hexid):
            found = [image for image in images if image.id.startswith(hexid)]
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                raise UsageError(
                    f"image id prefix {ref} is ambiguous: it matches {', '.join(i.id[:12] for i in found)}",
                    hint="give more digits of the id",
                )
            for image in images:  # the ID podman and containerd know it by (an archive's rootfsImageID)
                if image.config_digest and image.config_digest == hexid:
                    return image, None
        raise NotFoundError(f"no such image: {ref}", hint=NOT_FOUND_HINT)

    def layer_dirs(self, image: Image) -> builtins.list[Path]:
        """The image's layer directories, bottom first (overlay wants them top first: reverse them)."""
        dirs = [self._layer_dir(d) for d in image.layers]
        for d in dirs:
            if not d.is_dir():
                raise AmberError(
                    f"image {image.name} is damaged: its layer {d.name[:12]} is missing from {self.layout.layers}",
                    hint=f"remove it (amber rmi {image.name}) and import it again",
                )
        return dirs

    # -- removal ---------------------------------------------------------------------------------
    def remove(self, ref: str, *, users: Sequence[str] = ()) -> Image:
        """Remove an image; by a name the image shares with others, only untag that name.

        Returns the untagged image (still stored) or the removed one. Raises NotFoundError for
        an unknown `ref`, ConflictError when the image itself would go while `users` use it.
        """
        return self.remove_image(ref, users=lambda _id: users).image

    def remove_image(
        self,
        ref: str,
        *,
        users: UsersOf = lambda _id: (),
        force: bool = False,
        remove_container: Callable[[str], object] | None = None,
    ) -> ImageRemoval:
        """Remove an image (or only untag it, by a name it shares with other images).

        `users` says which containers use an image; it is asked under the images lock, so no
        image operation runs between the question and the removal. With `force`, those
        containers are removed first, through `remove_container`. Layers no other image uses are
        deleted. Raises NotFoundError for an unknown `ref`, UsageError for an ambiguous id
        prefix, ConflictError when containers use the image and `force` is not given,
        PreconditionError when not root.
        """
        require_root("removing an image")
        with self.lock():
            image, matched = self._resolve(ref)
            if matched is not None and len(image.names) > 1:
                untagged = dataclasses.replace(image, names=[n for n in image.names if n != matched])
                self._save(untagged)
                return ImageRemoval(untagged, [matched], deleted=False, containers=[])
            using = list(users(image.id))
            if using and (not force or remove_container is None):
                raise ConflictError(
                    f"image {image.name} is in use by container(s): {', '.join(using)}",
                    hint="remove those containers first (amber rm NAME), or use amber rmi -f to remove them too",
                )
            for name in using:
                assert remove_container is not None
                remove_container(name)
            self._record(image.id).unlink(missing_ok=True)
            in_use = {d for other in self.list() for d in other.layers}
            for digest in dict.fromkeys(image.layers):
                if digest not in in_use:
                    self._delete_layer(digest)
            return ImageRemoval(image, list(image.names), deleted=True, containers=using)

    def _delete_layer(self, digest: str) -> None:
        """Rename away first, so a half-deleted layer is never seen under its digest."""
        from amber.adapters import layers

        path = self._layer_dir(digest)
        if path.is_dir():
            doomed = Path(tempfile.mkdtemp(dir=self.layout.layers, prefix=f"{layers.TEMP_PREFIX}rm-"))
            os.rename(path, doomed / digest)
            layers.discard(doomed)
        path.with_name(path.name + ".json").unlink(missing_ok=True)

    # -- records ---------------------------------------------------------------------------------
    def _record(self, iid: str) -> Path:
        return self.layout.images / f"{iid}.json"

    def _layer_dir(self, digest: str) -> Path:
        return self.layout.layers / digest

    def _layer_size(self, digest: str) -> int:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            return int(read_json(self._layer_dir(digest).with_name(f"{digest}.json")).get("size", 0))
        return 0

    def _load(self, iid: str) -> Image | None:
        if not HEX_RE.fullmatch(iid):
            return None
        try:
            return Image.from_dict(read_json(self._record(iid)))
        except FileNotFoundError:
            return None

    def _save(self, image: Image) -> None:
        atomic_write_json(self._record(image.id), image.to_dict())


def _verify(layer: image_sources.LayerSource, extracted: layers.ExtractedLayer) -> None:
    if layer.blob_digest and extracted.blob_digest != layer.blob_digest:
        raise ArchiveError(
            f"{layer.label} does not match its digest: got sha256:{extracted.blob_digest[:12]}..., "
            f"expected sha256:{layer.blob_digest[:12]}...",
            hint="the image is damaged or was tampered with; export it again",
        )
    if layer.blob_size is not None and extracted.blob_size != layer.blob_size:
        raise ArchiveError(
            f"{layer.label} is {extracted.blob_size} bytes, its manifest says {layer.blob_size}",
            hint="the image is damaged or truncated; export it again",
        )
    if layer.diff_id and extracted.diff_id != layer.diff_id:
        raise ArchiveError(
            f"{layer.label} does not match the layer digest in the image config (rootfs.diff_ids): "
            f"got sha256:{extracted.diff_id[:12]}..., expected sha256:{layer.diff_id[:12]}...",
            hint="the image is damaged or was tampered with; export it again",
        )
