"""What `amber image import SOURCE NAME` can read, and how: the layers (bottom first) and config.

Supported sources:

1. a rootfs tarball, as for `podman import` (plain, gzip, zstd or xz): one layer;
2. an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`);
3. an oci-archive: a tarball of an OCI image layout;
4. a `docker save` tarball (`manifest.json` naming the config and the layers in order).

An uncompressed archive (3, 4) is read in place: its members are opened straight from the tar.
A compressed one is unpacked once, regular files only, into a private temp dir under amber's tmp.
Blob digests (manifests, configs, compressed layers) are checked; layer digests are checked by the
caller while it extracts them (`LayerSource.blob_digest`, `LayerSource.diff_id`).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import platform
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from amber.adapters.image_trees import SUPPORTED, DirTree, TarTree, Tree, bad_image, not_an_image, unpack
from amber.adapters.tar.compression import Compression, open_tar_stream, sniff_file
from amber.adapters.tar.headers import members, open_tar
from amber.errors import ArchiveError, NotFoundError
from amber.models import ImageConfig

log = logging.getLogger("amber.image_sources")

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_JSON = 16 << 20
MAX_INDEX_DEPTH = 4
SCAN_FOREIGN_LIMIT = 256
UNPACK_PREFIX = "image-import-"
HEX64 = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
ARCHIVE_TOP = {"oci-layout", "index.json", "manifest.json", "repositories", "blobs"}
ARCHIVE_TOP_RE = re.compile(r"[0-9a-f]{64}(\.json|\.tar)?")

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


class SourceKind(enum.StrEnum):
    ROOTFS = "rootfs tarball"
    OCI_LAYOUT = "OCI layout"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_SAVE = "docker-save"


@dataclass(frozen=True)
class LayerSource:
    """One layer to extract: `open()` gives its bytes as stored (maybe compressed); close them."""

    label: str  # names the layer in messages, e.g. "blobs/sha256/ab12... in img.tar"
    open: Callable[[], IO[bytes]]
    media_type: str = ""
    blob_digest: str | None = None  # expected sha256 hex of the bytes as stored, when known
    blob_size: int | None = None
    diff_id: str | None = None  # expected sha256 hex of the uncompressed tar, when known


@dataclass(frozen=True)
class ImageSource:
    path: Path
    kind: SourceKind
    layers: tuple[LayerSource, ...]  # bottom first
    config: ImageConfig
    created: str = ""  # RFC 3339, from the image config when it has one
    config_digest: str = ""  # sha256 hex of the config blob (podman's image ID); "" for a rootfs


@contextlib.contextmanager
def open_source(path: Path, tmp_dir: Path) -> Iterator[ImageSource]:
    """Recognize `path` and describe the image it holds. Layers can be opened inside the `with`."""
    if path.is_dir():
        yield _read_dir(path)
        return
    if not path.exists():
        raise NotFoundError(f"no such file or directory: {path}", hint=f"give {SUPPORTED}")
    if not path.is_file():
        raise not_an_image(path, "not a regular file or a directory")
    try:
        compression = sniff_file(path)
    except OSError as exc:
        raise not_an_image(path, f"cannot read it: {exc.strerror}") from exc
    kind = _classify(path, compression)
    if kind is SourceKind.ROOTFS:
        yield ImageSource(
            path, kind, (LayerSource(str(path), lambda: path.open("rb")),), ImageConfig(env=[DEFAULT_PATH])
        )
    elif compression is Compression.NONE:
        with path.open("rb") as f, open_tar(f, str(path), stream=False) as tar:
            yield _read_tree(TarTree(tar, path), kind)
    else:
        tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = Path(tempfile.mkdtemp(dir=tmp_dir, prefix=UNPACK_PREFIX))
        try:
            aliases = unpack(path, work)
            yield _read_tree(DirTree(work, path, aliases), kind)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _read_dir(path: Path) -> ImageSource:
    if (path / "oci-layout").is_file() and (path / "index.json").is_file():
        return _read_tree(DirTree(path, path), SourceKind.OCI_LAYOUT)
    if (path / "manifest.json").is_file():
        return _read_tree(DirTree(path, path), SourceKind.DOCKER_SAVE)
    raise not_an_image(path, "a directory without oci-layout and index.json (nor a docker save manifest.json)")


# -- recognizing a tarball --------------------------------------------------------------------


def _classify(path: Path, compression: Compression) -> SourceKind:
    """Look at the top-level names: an image archive holds only oci-layout, index.json, blobs/, ..."""

    def not_tar(exc: BaseException) -> ArchiveError:
        return not_an_image(path, f"not a (readable) tar archive: {exc}")

    try:
        with path.open("rb") as raw, contextlib.ExitStack() as stack:
            if compression is Compression.NONE:  # seeks over member data
                tar = open_tar(raw, str(path), stream=False, not_tar=not_tar)
            else:
                plain = stack.enter_context(open_tar_stream(raw))
                tar = open_tar(plain, str(path), stream=True, not_tar=not_tar)
            with tar:
                return _scan(path, tar)
    except OSError as exc:
        raise not_an_image(path, f"cannot read it: {exc.strerror}") from exc


def _scan(path: Path, tar: tarfile.TarFile) -> SourceKind:
    tops: set[str] = set()
    foreign = 0
    for member in members(tar, str(path)):
        top = member.name.lstrip("/").removeprefix("./").split("/", 1)[0]
        if top in ("", "."):
            continue
        tops.add(top)
        if {"oci-layout", "index.json"} <= tops:
            return SourceKind.OCI_ARCHIVE
        if top not in ARCHIVE_TOP and not ARCHIVE_TOP_RE.fullmatch(top):
            foreign += 1
            if foreign >= SCAN_FOREIGN_LIMIT and {"config.dump", "spec.dump"} - tops:
                break
    return _decide(path, tops, foreign)


def _decide(path: Path, tops: set[str], foreign: int) -> SourceKind:
    if {"config.dump", "spec.dump"} <= tops:
        raise ArchiveError(
            f"{path} is a checkpoint archive, not an image", hint=f"restore it with: amber restore --import {path}"
        )
    if not tops:
        raise not_an_image(path, "the tar archive is empty")
    if "manifest.json" in tops and not foreign:
        return SourceKind.DOCKER_SAVE
    return SourceKind.ROOTFS


# -- reading blobs and JSON --------------------------------------------------------------------


def _read_bytes(tree: Tree, name: str) -> bytes:
    with tree.open(name) as f:
        data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise bad_image(tree.source, f"{name} is larger than {MAX_JSON >> 20} MiB, too large for metadata")
    return data


def _parse_json(tree: Tree, name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_image(tree.source, f"{name} is not valid JSON: {exc}") from exc


def _read_json(tree: Tree, name: str) -> Any:
    return _parse_json(tree, name, _read_bytes(tree, name))


@dataclass(frozen=True)
class _Descriptor:
    media_type: str
    digest: str  # hex
    size: int
    platform: dict[str, Any]
    annotations: dict[str, Any]

    @property
    def path(self) -> str:
        return f"blobs/sha256/{self.digest}"


def _descriptor(tree: Tree, d: Any, what: str) -> _Descriptor:
    if not isinstance(d, dict):
        raise bad_image(tree.source, f"{what} is not a descriptor object")
    match = DIGEST.fullmatch(str(d.get("digest", "")))
    if match is None:
        raise bad_image(tree.source, f"{what} has digest {d.get('digest')!r}; only sha256:<64 hex> is supported")
    size = d.get("size", -1)
    if not isinstance(size, int) or size < 0:
        raise bad_image(tree.source, f"{what} has no valid size")
    plat, ann = d.get("platform"), d.get("annotations")
    return _Descriptor(
        str(d.get("mediaType", "")),
        match.group(1),
        size,
        plat if isinstance(plat, dict) else {},
        ann if isinstance(ann, dict) else {},
    )


def _read_blob_json(tree: Tree, desc: _Descriptor, what: str) -> Any:
    data = _read_bytes(tree, desc.path)
    if hashlib.sha256(data).hexdigest() != desc.digest or len(data) != desc.size:
        raise bad_image(tree.source, f"{what} blob {desc.digest[:12]} does not match its digest or size")
    return _parse_json(tree, desc.path, data)


# -- OCI layout ---------------------------------------------------------------------------------


def _read_tree(tree: Tree, kind: SourceKind) -> ImageSource:
    if kind is SourceKind.DOCKER_SAVE:
        return _read_docker(tree, kind)
    return _read_oci(tree, kind)


def _read_oci(tree: Tree, kind: SourceKind) -> ImageSource:
    layout = _read_json(tree, "oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise bad_image(tree.source, "oci-layout has no imageLayoutVersion")
    manifest_desc = _choose_manifest(tree, _read_json(tree, "index.json"), "index.json", 0)
    manifest = _read_blob_json(tree, manifest_desc, "manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise bad_image(tree.source, f"manifest {manifest_desc.digest[:12]} has no layers list")
    config_desc = _descriptor(tree, manifest.get("config"), "the manifest's config")
    config = _read_blob_json(tree, config_desc, "config")
    descs = [_descriptor(tree, d, f"layer {i}") for i, d in enumerate(manifest["layers"])]
    diff_ids = _diff_ids(tree, config, len(descs))
    sources = tuple(_oci_layer(tree, d, diff_id) for d, diff_id in zip(descs, diff_ids, strict=True))
    return _image(tree, kind, sources, config, config_desc.digest)


def _choose_manifest(tree: Tree, index: Any, what: str, depth: int) -> _Descriptor:
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list) or not index["manifests"]:
        raise bad_image(tree.source, f"{what} lists no manifests")
    descs = [_descriptor(tree, d, f"a manifest of {what}") for d in index["manifests"]]
    images = [
        d
        for d in descs
        if d.platform.get("os") != "unknown"
        and d.annotations.get("vnd.docker.reference.type") != "attestation-manifest"
    ] or descs
    arch = ARCH.get(platform.machine(), "amd64")
    chosen = next(
        (d for d in images if d.platform.get("os") == "linux" and d.platform.get("architecture") == arch), images[0]
    )
    if chosen.media_type in INDEX_TYPES:
        if depth >= MAX_INDEX_DEPTH:
            raise bad_image(tree.source, "image indexes nest too deeply")
        return _choose_manifest(tree, _read_blob_json(tree, chosen, "index"), f"index {chosen.digest[:12]}", depth + 1)
    if chosen.media_type and chosen.media_type not in MANIFEST_TYPES:
        raise bad_image(tree.source, f"manifest {chosen.digest[:12]} has unsupported media type {chosen.media_type}")
    if len(images) > 1:
        log.info("%s holds %d manifests; using %s", tree.source, len(images), chosen.digest[:12])
    return chosen


def _oci_layer(tree: Tree, d: _Descriptor, diff_id: str | None) -> LayerSource:
    if d.media_type and d.media_type not in LAYER_TYPES:
        raise bad_image(
            tree.source,
            f"layer {d.digest[:12]} has unsupported media type {d.media_type} "
            "(encrypted or foreign layers are not supported)",
        )
    return LayerSource(
        label=f"layer blob {d.digest[:12]} in {tree.source}",
        open=_opener(tree, d.path),
        media_type=d.media_type,
        blob_digest=d.digest,
        blob_size=d.size,
        diff_id=diff_id,
    )


def _opener(tree: Tree, name: str) -> Callable[[], IO[bytes]]:
    return lambda: tree.open(name)


# -- config --------------------------------------------------------------------------------------


def _diff_ids(tree: Tree, config: Any, n_layers: int) -> list[str | None]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    raw = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if raw is None:
        return [None] * n_layers
    if not isinstance(raw, list) or len(raw) != n_layers:
        raise bad_image(
            tree.source,
            f"the config lists {len(raw) if isinstance(raw, list) else 'no'} layer "
            f"digests (rootfs.diff_ids) for {n_layers} layers",
        )
    out: list[str | None] = []
    for value in raw:
        match = DIGEST.fullmatch(str(value))
        if match is None:
            raise bad_image(tree.source, f"the config has a malformed layer digest {value!r}")
        out.append(match.group(1))
    return out


def _strings(tree: Tree, cfg: dict[str, Any], key: str) -> list[str]:
    value = cfg.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise bad_image(tree.source, f"the config's {key} is not a list of strings")
    return list(value)


def _image(
    tree: Tree, kind: SourceKind, sources: tuple[LayerSource, ...], config: Any, config_digest: str
) -> ImageSource:
    if not isinstance(config, dict):
        raise bad_image(tree.source, "the image config is not a JSON object")
    if config.get("os", "linux") != "linux":
        raise bad_image(tree.source, f"the image is for {config.get('os')}, not linux")
    cfg = config.get("config") or {}
    if not isinstance(cfg, dict):
        raise bad_image(tree.source, "the image config's config is not an object")
    workdir = cfg.get("WorkingDir") or ""
    image_config = ImageConfig(
        env=_strings(tree, cfg, "Env"),
        entrypoint=_strings(tree, cfg, "Entrypoint"),
        cmd=_strings(tree, cfg, "Cmd"),
        workdir=str(workdir),
    )
    created = config.get("created")
    return ImageSource(
        tree.source, kind, sources, image_config, created if isinstance(created, str) else "", config_digest
    )


# -- docker save -----------------------------------------------------------------------------------


def _read_docker(tree: Tree, kind: SourceKind) -> ImageSource:
    manifest = _read_json(tree, "manifest.json")
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise bad_image(tree.source, "manifest.json is not a list of images")
    if len(manifest) > 1:
        log.info("%s holds %d images; importing the first", tree.source, len(manifest))
    entry = manifest[0]
    config_name, layer_names = entry.get("Config"), entry.get("Layers")
    if (
        not isinstance(config_name, str)
        or not isinstance(layer_names, list)
        or not all(isinstance(n, str) for n in layer_names)
    ):
        raise bad_image(tree.source, "manifest.json has no Config or no Layers list")
    data = _read_bytes(tree, config_name)
    expected = _digest_in_name(config_name)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise bad_image(tree.source, f"config {config_name} does not match its digest")
    config = _parse_json(tree, config_name, data)
    diff_ids = _diff_ids(tree, config, len(layer_names))
    sources = tuple(
        LayerSource(
            label=f"{name} in {tree.source}",
            open=_opener(tree, name),
            blob_digest=_digest_in_name(name),
            diff_id=diff_id,
        )
        for name, diff_id in zip(layer_names, diff_ids, strict=True)
    )
    return _image(tree, kind, sources, config, hashlib.sha256(data).hexdigest())


def _digest_in_name(name: str) -> str | None:
    """The sha256 a docker save member name carries: blobs/sha256/<hex> or <hex>.json."""
    parts = name.removeprefix("./").split("/")
    if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] and HEX64.fullmatch(parts[2]):
        return parts[2]
    if len(parts) == 1 and parts[0].endswith(".json") and HEX64.fullmatch(parts[0][:-5]):
        return parts[0][:-5]
    return None
