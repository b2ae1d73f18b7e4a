"""Stored layers back into OCI layer tarballs: the reverse of layers.extract_layer (for a push).

The store keeps a layer extracted, in overlayfs lower-layer format; a registry wants a tar. The
tar is written by the one tar engine's writer (adapters/tar/writer.py), deterministically: the
same directory always gives the same bytes, hence the same digest (entries depth first, names in
byte order, owners and modes and whole-second mtimes as stored, no user or group names, xattrs
sorted, hard links as link entries). overlayfs's whiteouts become OCI's again: a 0:0 character
device NAME is written as an empty `.wh.NAME`, a directory marked `trusted.overlay.opaque=y` gets
a `.wh..wh..opq` entry first; overlayfs's own `trusted.overlay.*` xattrs are never written.

Extracting the tar again (layers.extract_layer) gives back the same directory, and packing that
gives the same tar: a push, pull, push round trip keeps every digest.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amber.adapters import oci_layout
from amber.adapters.checkpoint_image import REF_NAME, host_facts
from amber.adapters.layers import OPAQUE_MARKER, OPAQUE_XATTR
from amber.adapters.oci_layout import CONFIG_TYPE, INDEX_TYPE, MANIFEST_TYPE, Descriptor, WrittenLayout
from amber.adapters.tar.extract import WHITEOUT_PREFIX
from amber.adapters.tar.writer import TarWriter
from amber.models import ImageConfig


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


class LayerWriter(TarWriter):
    """A TarWriter that writes overlayfs's whiteouts as OCI's."""

    def __init__(self, out: Any) -> None:
        super().__init__(out)

    def _marker(self, arcname: str, st: os.stat_result) -> None:
        # A marker's time means nothing, and a whiteout device's is when it was extracted: 0
        # keeps pack -> pull -> pack byte-identical.
        ti = tarfile.TarInfo(arcname)
        ti.type, ti.size, ti.mode, ti.mtime = tarfile.REGTYPE, 0, 0, 0
        ti.uid, ti.gid = st.st_uid, st.st_gid
        self._header(ti)

    def add_layer_tree(self, path: str, arcname: str) -> None:
        """`path` (and for a directory everything under it) as OCI layer entries named `arcname`."""
        st = os.lstat(path)
        head, _, base = arcname.rpartition("/")
        if _is_whiteout(st):
            self._marker(f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base, st)
            return
        self.add(path, arcname, st)
        if not stat.S_ISDIR(st.st_mode):
            return
        if _opaque(path):
            self._marker(f"{arcname}/{OPAQUE_MARKER}", st)
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            self.add_layer_tree(entry.path, f"{arcname}/{entry.name}")

    def add_layer(self, layer_dir: Path) -> None:
        """Every entry under `layer_dir` (not the directory itself), then the end marker."""
        for name in sorted(os.listdir(layer_dir), key=os.fsencode):
            self.add_layer_tree(str(layer_dir / name), name)
        self.close()


def pack_layer(layer_dir: Path, out: Any) -> None:
    """Write the OCI layer tar of the stored layer `layer_dir` to the binary stream `out`.

    Raises OSError when the layer cannot be read (the caller names the image).
    """
    LayerWriter(out).add_layer(layer_dir)


def write_layer_blob(layer_dir: Path, blobs: Path) -> Descriptor:
    """The OCI layer tar of `layer_dir` as an uncompressed blob in `blobs` (its digest is also
    its diff_id). Raises OSError when the layer cannot be read."""
    return oci_layout.stream_blob(blobs, lambda out: pack_layer(layer_dir, out))


def write_image_layout(
    layer_dirs: Sequence[Path], dest: Path, config: ImageConfig, *, tag: str, created: str
) -> tuple[WrittenLayout, list[Descriptor]]:
    """An OCI layout at `dest` of an ordinary image: its stored layers (bottom first) packed,
    a config with its Env/Entrypoint/Cmd/WorkingDir, a manifest tagged `tag`.

    Returns the layout and the layer descriptors. Raises OSError when a layer cannot be read.
    """
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    packed = [write_layer_blob(d, blobs) for d in layer_dirs]
    image_config: dict[str, Any] = {}
    for key, value in (
        ("Env", config.env),
        ("Entrypoint", config.entrypoint),
        ("Cmd", config.cmd),
        ("WorkingDir", config.workdir),
    ):
        if value:
            image_config[key] = value
    arch = host_facts().arch
    cfg = oci_layout.put_json(
        blobs,
        CONFIG_TYPE,
        {
            "created": created,
            "architecture": arch,
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d.digest}" for d in packed]},
        },
    )
    manifest = oci_layout.put_json(
        blobs,
        MANIFEST_TYPE,
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": cfg.to_dict(),
            "layers": [d.to_dict() for d in packed],
        },
    )
    entry = manifest.to_dict({REF_NAME: tag})
    entry["platform"] = {"architecture": arch, "os": "linux"}
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]}))
    return WrittenLayout(dest, tag, manifest, cfg, packed[-1]), packed


__all__ = ["LayerWriter", "pack_layer", "write_image_layout", "write_layer_blob"]
