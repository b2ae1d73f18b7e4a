"""Checkpoint images as OCI image layouts: write one from a checkpoint archive, read one back.

Written as podman's `--create-image` does: ONE uncompressed layer holding the archive's files at
`/` (each directory's entries in byte order, parents first, uid/gid 0), a config with only
created/architecture/os (and the rootfs.diff_ids the OCI spec requires), the three annotation
sets on the manifest and checkpointctl's and CRI-O's on the index (see checkpoint_image). The
layer is streamed from a private extraction of the archive; nothing is held whole in memory.

Reading: an OCI layout directory or an oci-archive tarball (plain or compressed). Every blob is
checked against its digest and size. A layer is hostile input: it is extracted with the tar engine
(no special files, no links out, no writes through symlinks) before it becomes an archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from amber.adapters import checkpoint_archive as archive
from amber.adapters.checkpoint_image import REF_NAME, CheckpointAnnotations, host_facts, is_checkpoint_image
from amber.adapters.tar.compression import CHUNK, READ_ERRORS, open_tar_stream
from amber.adapters.tar.extract import extract
from amber.adapters.tar.policy import Policy
from amber.adapters.tar.writer import TarWriter
from amber.errors import ArchiveError, NotFoundError

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
READABLE_LAYERS = {
    LAYER_TYPE,
    LAYER_TYPE + "+gzip",
    LAYER_TYPE + "+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
MANIFEST_TYPES = {MANIFEST_TYPE, "application/vnd.docker.distribution.manifest.v2+json"}
MAX_JSON = 16 << 20
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
WORK_PREFIX = "checkpoint-image-"
HEAD_NAMES = (archive.AMBER_MANIFEST, archive.CONFIG_DUMP, archive.SPEC_DUMP)
_HINT = "the image is damaged or was not written as an OCI image; get it again"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # sha256 hex
    size: int

    def to_dict(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": f"sha256:{self.digest}", "size": self.size}
        if annotations:
            d["annotations"] = annotations
        return d


@dataclass(frozen=True)
class WrittenLayout:
    path: Path
    tag: str
    manifest: Descriptor
    config: Descriptor
    layer: Descriptor  # uncompressed: its digest is also the layer's diff_id


def _bad(source: Path, why: str) -> ArchiveError:
    return ArchiveError(f"image {source}: {why}", hint=_HINT)


# ===================================== writing ================================================
class HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self.f = f
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        self.sha.update(data)
        self.count += len(data)
        self.f.write(data)
        return len(data)


class _RootOwnedWriter(TarWriter):
    """podman's layer: every entry owned by uid/gid 0, whoever extracted the archive; directories
    keep the modes `modes` recorded before they were opened up (see `traversable`)."""

    def __init__(self, out: Any, modes: dict[str, int]) -> None:
        super().__init__(out)
        self.modes = modes

    def _header(self, ti: tarfile.TarInfo) -> None:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mode = self.modes.get(ti.name, ti.mode)
        super()._header(ti)


def traversable(files_dir: Path) -> dict[str, int]:
    """Let us read every directory under `files_dir` (ours): runc writes checkpoint/ as 0600,
    which only root can walk. Returns {relative name: the mode it had} for those changed."""
    changed: dict[str, int] = {}
    if os.geteuid() == 0:
        return changed
    for dirpath, dirnames, _files in os.walk(files_dir):
        for name in dirnames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
                changed[str(path.relative_to(files_dir))] = stat.S_IMODE(st.st_mode)
                os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
    return changed


def blob_writer(blobs: Path) -> tuple[int, str]:
    blobs.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=blobs, prefix=".tmp-")


def commit_blob(blobs: Path, tmp: str, digest: str) -> None:
    os.chmod(tmp, 0o644)
    os.replace(tmp, blobs / digest)


def top_entries(files_dir: Path) -> list[str]:
    """The top-level names of a checkpoint directory, in byte order."""
    return sorted(os.listdir(files_dir), key=os.fsencode)


def stream_blob(blobs: Path, fill: Callable[[HashingFile], None], media_type: str = LAYER_TYPE) -> Descriptor:
    """A blob in `blobs` of what `fill` writes to the stream it is given (hashed on the way)."""
    fd, tmp = blob_writer(blobs)
    try:
        with open(fd, "wb", buffering=CHUNK) as f:
            out = HashingFile(f)
            fill(out)
        digest = out.sha.hexdigest()
        commit_blob(blobs, tmp, digest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Descriptor(media_type, digest, out.count)


def write_layer(files_dir: Path, blobs: Path) -> Descriptor:
    """The uncompressed layer tar of everything under `files_dir`, as a blob in `blobs`."""

    def fill(out: HashingFile) -> None:
        writer = _RootOwnedWriter(out, traversable(files_dir))
        for name in top_entries(files_dir):
            writer.add_tree(str(files_dir / name), name)
        writer.close()

    return stream_blob(blobs, fill)


def put_json(blobs: Path, media_type: str, doc: dict[str, Any]) -> Descriptor:
    data = json.dumps(doc, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    fd, tmp = blob_writer(blobs)
    with open(fd, "wb") as f:
        f.write(data)
    commit_blob(blobs, tmp, digest)
    return Descriptor(media_type, digest, len(data))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_layout_from_dir(
    files_dir: Path, dest: Path, annotations: CheckpointAnnotations, *, tag: str = "latest", created: str = ""
) -> WrittenLayout:
    """Write (or add to) the OCI layout `dest` a checkpoint image of the files under `files_dir`."""
    blobs = dest / "blobs" / "sha256"
    layer = write_layer(files_dir, blobs)
    config = put_json(
        blobs,
        CONFIG_TYPE,
        {
            "created": created or _now(),
            "architecture": host_facts().arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.digest}"]},
        },
    )
    manifest = put_json(
        blobs,
        MANIFEST_TYPE,
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config.to_dict(),
            "layers": [layer.to_dict()],
            "annotations": annotations.manifest_annotations(),
        },
    )
    index_ann = annotations.index_annotations()
    index_path = dest / "index.json"
    others: list[Any] = []
    if index_path.is_file():  # keep the other tags of an existing layout
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(index_path.read_text())
            others = [
                m
                for m in old.get("manifests", [])
                if isinstance(m, dict) and (m.get("annotations") or {}).get(REF_NAME) != tag
            ]
    entry = manifest.to_dict({**index_ann, REF_NAME: tag})
    entry["platform"] = {"architecture": host_facts().arch, "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [*others, entry], "annotations": index_ann}
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    tmp = index_path.with_name(".index.json.tmp")
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, index_path)
    return WrittenLayout(dest, tag, manifest, config, layer)


@contextlib.contextmanager
def work_dir(parent: Path, what: str = "") -> Iterator[Path]:
    """A private temporary directory under `parent`, removed afterwards."""
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{WORK_PREFIX}{what}"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_layout(
    archive_path: Path,
    dest: Path,
    annotations: CheckpointAnnotations,
    *,
    tmp_dir: Path,
    tag: str = "latest",
    created: str = "",
) -> WrittenLayout:
    """A checkpoint image of the checkpoint archive `archive_path` in the OCI layout `dest`.

    The archive is extracted (hostile-safe, owners dropped) into a private dir under `tmp_dir`,
    so that its files can be written in lexical order. Raises ArchiveError for a bad archive.
    """
    with work_dir(tmp_dir, "files-") as files:
        archive.extract_members(archive_path, files, lambda _name: True)
        if not (files / archive.CONFIG_DUMP).is_file():
            raise ArchiveError(
                f"checkpoint archive {archive_path} has no config.dump", hint="give a container checkpoint archive"
            )
        return write_layout_from_dir(files, dest, annotations, tag=tag, created=created)


# ===================================== reading ================================================
@dataclass(frozen=True)
class ImageLayout:
    """One image of an OCI layout: its annotations and its layers (checked digests)."""

    source: Path  # what the user gave (a directory or an oci-archive)
    root: Path  # the layout directory (the source, or our private unpack of it)
    tag: str
    manifest: Descriptor
    manifest_annotations: dict[str, str]
    index_annotations: dict[str, str]
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]  # from the config, may be empty

    @property
    def is_checkpoint(self) -> bool:
        return is_checkpoint_image(self.manifest_annotations, self.index_annotations)

    @property
    def annotations(self) -> CheckpointAnnotations:
        """Raises ArchiveError when this is not a checkpoint image."""
        return CheckpointAnnotations.from_annotations(self.index_annotations, self.manifest_annotations)

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest


def _read_blob(root: Path, source: Path, name: str, desc: Descriptor | None = None) -> Any:
    path = root / name if desc is None else root / "blobs" / "sha256" / desc.digest
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _bad(source, f"{name} is missing") from None
    except OSError as exc:
        raise _bad(source, f"cannot read {name}: {exc.strerror}") from exc
    with open(fd, "rb") as f:
        data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise _bad(source, f"{name} is larger than {MAX_JSON >> 20} MiB")
    if desc is not None and (hashlib.sha256(data).hexdigest() != desc.digest or len(data) != desc.size):
        raise _bad(source, f"{name} does not match its digest or size")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(source, f"{name} is not valid JSON: {exc}") from exc


def _descriptor(source: Path, d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict):
        raise _bad(source, f"{what} is not a descriptor object")
    match = DIGEST.fullmatch(str(d.get("digest", "")))
    size = d.get("size")
    if match is None or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(source, f"{what} has no sha256 digest or no valid size")
    return Descriptor(str(d.get("mediaType", "")), match.group(1), size)


def _strings(d: Any) -> dict[str, str]:
    return {str(k): v for k, v in d.items() if isinstance(v, str)} if isinstance(d, dict) else {}


def read_layout_dir(root: Path, *, tag: str | None = None, source: Path | None = None) -> ImageLayout:
    """The image tagged `tag` (or the only/first one) of the OCI layout directory `root`."""
    source = source or root
    index = _read_blob(root, source, "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise _bad(source, "index.json lists no manifests")
    if tag is not None:
        entries = [e for e in entries if _strings(e.get("annotations")).get(REF_NAME) == tag]
        if not entries:
            raise NotFoundError(f"image {source} has no image tagged {tag!r}", hint="give one of its tags")
    entry = entries[0]
    desc = _descriptor(source, entry, "the index's manifest")
    if desc.media_type and desc.media_type not in MANIFEST_TYPES:
        raise _bad(source, f"its manifest has media type {desc.media_type}: nested indexes are not supported here")
    manifest = _read_blob(root, source, f"manifest {desc.digest[:12]}", desc)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise _bad(source, "the manifest has no layers list")
    config_desc = _descriptor(source, manifest.get("config"), "the manifest's config")
    config = _read_blob(root, source, f"config {config_desc.digest[:12]}", config_desc)
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    raw_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    diff_ids = tuple(m.group(1) for x in raw_ids or [] if (m := DIGEST.fullmatch(str(x))))
    index_ann = {**_strings(index.get("annotations")), **_strings(entry.get("annotations"))}
    index_ann.pop(REF_NAME, None)
    return ImageLayout(
        source=source,
        root=root,
        tag=_strings(entry.get("annotations")).get(REF_NAME, ""),
        manifest=desc,
        manifest_annotations=_strings(manifest.get("annotations")),
        index_annotations=index_ann,
        layers=tuple(_descriptor(source, d, f"layer {i}") for i, d in enumerate(manifest["layers"])),
        diff_ids=diff_ids,
    )


@contextlib.contextmanager
def open_layout(path: Path, *, tmp_dir: Path, tag: str | None = None) -> Iterator[ImageLayout]:
    """An OCI layout directory, or an oci-archive (unpacked hostile-safe under `tmp_dir`)."""
    if path.is_dir():
        yield read_layout_dir(path, tag=tag)
        return
    if not path.is_file():
        raise NotFoundError(f"no such OCI layout or oci-archive: {path}", hint="check the path")
    with work_dir(tmp_dir, "layout-") as root:
        try:
            with path.open("rb") as raw, open_tar_stream(raw) as plain:
                extract(plain, root, Policy(), archive=str(path))
        except READ_ERRORS as exc:
            raise _bad(path, f"the archive is corrupt or truncated: {exc}") from exc
        if not (root / "index.json").is_file():
            raise _bad(path, "it is not an oci-archive (no index.json at its top)")
        yield read_layout_dir(root, tag=tag, source=path)


def checkpoint_layer(layout: ImageLayout) -> Descriptor:
    """The one layer of a checkpoint image. Raises ArchiveError when it is not one."""
    if not layout.is_checkpoint:
        raise ArchiveError(
            f"image {layout.source} is not a checkpoint image (it has no checkpoint annotations)",
            hint="import it as an ordinary image with amber image import",
        )
    if len(layout.layers) != 1:
        raise _bad(layout.source, f"a checkpoint image has one layer; this one has {len(layout.layers)}")
    layer = layout.layers[0]
    if layer.media_type and layer.media_type not in READABLE_LAYERS:
        raise _bad(layout.source, f"its layer has media type {layer.media_type}, which amber cannot read")
    return layer


def _file_digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def layer_to_dir(layout: ImageLayout, dest: Path) -> list[str]:
    """Extract the checkpoint layer into `dest` (hostile-safe). Returns the names written."""
    layer = checkpoint_layer(layout)
    blob = layout.blob(layer.digest)
    if blob.is_symlink() or not blob.is_file():
        raise _bad(layout.source, f"its layer blob {layer.digest[:12]} is missing")
    if _file_digest(blob) != (layer.digest, layer.size):
        raise _bad(layout.source, f"its layer blob {layer.digest[:12]} does not match its digest or size")
    label = f"checkpoint layer {layer.digest[:12]} of {layout.source}"
    try:
        with blob.open("rb") as raw, open_tar_stream(raw) as plain:
            return extract(plain, dest, Policy(), archive=label).written
    except READ_ERRORS as exc:
        raise ArchiveError(f"{label} is corrupt or truncated: {exc}", hint=_HINT) from exc


def archive_from_dir(
    files_dir: Path, dest: Path, *, compression: archive.Compression = archive.Compression.NONE
) -> int:
    """Write the checkpoint files under `files_dir` as a checkpoint archive (metadata first).

    Raises ArchiveError when config.dump or spec.dump is missing or not a regular file.
    """
    head: dict[str, bytes] = {}
    for name in HEAD_NAMES:
        path = files_dir / name
        if not os.path.lexists(path):
            continue
        st = path.lstat()
        if not path.is_file() or path.is_symlink() or st.st_size > archive.MAX_DUMP_SIZE:
            raise ArchiveError(
                f"checkpoint image files in {files_dir}: {name} is not a regular file of at most "
                f"{archive.MAX_DUMP_SIZE >> 20} MiB",
                hint=_HINT,
            )
        head[name] = path.read_bytes()
    for name in (archive.CONFIG_DUMP, archive.SPEC_DUMP):
        if name not in head:
            raise ArchiveError(f"the checkpoint image lacks {name}: it is not a container checkpoint", hint=_HINT)
    members = [n for n in top_entries(files_dir) if n not in HEAD_NAMES]
    traversable(files_dir)  # (not root: such directories then keep u+rwx in the archive)
    return archive.write_archive(dest, files_dir, members, compression, head=head)


def layer_to_archive(
    layout: ImageLayout,
    dest: Path,
    *,
    tmp_dir: Path,
    compression: archive.Compression = archive.Compression.NONE,
) -> Path:
    """The checkpoint image's layer as a checkpoint archive at `dest`, which restore takes."""
    with work_dir(tmp_dir, "layer-") as files:
        layer_to_dir(layout, files)
        archive_from_dir(files, dest, compression=compression)
    return dest
