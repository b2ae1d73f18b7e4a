"""An OCI image archive (oci-archive layout in a tar) made from a rootfs tar, with a stable config digest.

Its config digest is the image ID podman and containerd use, so the same bytes give the same ID in
every engine that loads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OciImage:
    path: Path  # the oci-archive tar
    name: str  # e.g. localhost/demo:latest
    config_digest: str  # sha256:... (podman's image ID without the prefix)
    manifest_digest: str  # sha256:... (what NAME@DIGEST pulls)

    @property
    def image_id(self) -> str:
        return self.config_digest.removeprefix("sha256:")


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _add(tar, "blobs/sha256/" + digest[7:], data)
    return digest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def build_oci_archive(rootfs_tar: Path, out: Path, name: str, cmd: tuple[str, ...] = ("sh",)) -> OciImage:
    """Write an oci-archive with one uncompressed layer (the rootfs tar as it is), named `name`."""
    layer = rootfs_tar.read_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "created": "2026-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": list(cmd), "WorkingDir": "/", "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "amber tests: demo rootfs"}],
    }
    with tarfile.open(out, "w") as tar:
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        layer_digest = _blob(tar, layer)
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = _blob(tar, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
                }
            ],
        }
        _add(tar, "index.json", json.dumps(index).encode())
    return OciImage(out, name, config_digest, manifest_digest)
