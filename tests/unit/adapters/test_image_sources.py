"""image_sources: rootfs tarballs, OCI layouts, oci-archives and docker save tarballs, recognized and read."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import image_sources as src
from amber.errors import ArchiveError, NotFoundError

from .test_layers import compress, f, tar_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
HOST_ARCH = src.ARCH.get(platform.machine(), "amd64")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer(files: Mapping[str, bytes]) -> bytes:
    return tar_bytes([f(name, data) for name, data in files.items()])


class Oci:
    """Blobs of one or more images, written out as an OCI layout (dir or tar) or a docker save."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def desc(self, media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        self.blobs[sha(data)] = data
        return {"mediaType": media_type, "digest": f"sha256:{sha(data)}", "size": len(data), **extra}

    def image(
        self,
        layer_tars: Sequence[bytes],
        *,
        compression: str = "gzip",
        arch: str = "amd64",
        config: Mapping[str, Any] | None = None,
        diff_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Store an image's blobs; returns its manifest descriptor."""
        layers = [self.desc(LAYER_TYPES[compression], compress(t, compression)) for t in layer_tars]
        cfg = {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": dict(config or {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "WorkingDir": "/w"}),
            "rootfs": {
                "type": "layers",
                "diff_ids": list(diff_ids) if diff_ids is not None else [f"sha256:{sha(t)}" for t in layer_tars],
            },
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.desc(OCI_CONFIG, json.dumps(cfg).encode()),
            "layers": layers,
        }
        return self.desc(OCI_MANIFEST, json.dumps(manifest).encode(), platform={"os": "linux", "architecture": arch})

    def layout(self, manifests: Sequence[dict[str, Any]]) -> dict[str, bytes]:
        files = {
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": json.dumps({"schemaVersion": 2, "manifests": list(manifests)}).encode(),
        }
        files.update({f"blobs/sha256/{h}": data for h, data in self.blobs.items()})
        return files


def docker_save(layer_tars: Sequence[bytes], *, link_last: bool = False) -> dict[str, bytes]:
    """A legacy `docker save`: <id>/layer.tar, <config digest>.json, manifest.json."""
    cfg = json.dumps(
        {
            "os": "linux",
            "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(t)}" for t in layer_tars]},
        }
    ).encode()
    files = {f"{sha(cfg)}.json": cfg}
    names = []
    for i, t in enumerate(layer_tars):
        name = f"{sha(str(i).encode())}/layer.tar"
        files[name] = t
        names.append(name)
    manifest = [{"Config": f"{sha(cfg)}.json", "RepoTags": ["x:1"], "Layers": names}]
    files["manifest.json"] = json.dumps(manifest).encode()
    if link_last:  # docker save writes a repeated layer as a symlink to the first copy
        files[names[-1]] = b"LINK:../" + names[0].encode()
    return files


def write_dir(root: Path, files: Mapping[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar(path: Path, files: Mapping[str, bytes], compression: str = "none") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            if data.startswith(b"LINK:"):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[5:].decode()
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    path.write_bytes(compress(buf.getvalue(), compression))
    return path


def read_layers(image: src.ImageSource) -> list[bytes]:
    out = []
    for ls in image.layers:
        with ls.open() as stream:
            out.append(stream.read())
    return out


L1 = layer({"etc/motd": b"hello\n", "bin/sh": b"sh"})
L2 = layer({"etc/motd": b"bye\n"})


# -- rootfs tarballs ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd", "xz"])
def test_rootfs_tarball(tmp_path: Path, compression: str) -> None:
    path = write_tar(tmp_path / "rootfs.tar", {"./etc/motd": b"hi", "./bin/busybox": b"x"}, compression)
    with src.open_source(path, tmp_path / "tmp") as image:
        assert image.kind is src.SourceKind.ROOTFS
        assert image.config.env == [src.DEFAULT_PATH] and image.config.cmd == []
        assert read_layers(image) == [path.read_bytes()]
        assert image.layers[0].blob_digest is None


# -- OCI layouts and archives -------------------------------------------------------------------


def test_oci_layout_directory(tmp_path: Path) -> None:
    oci = Oci()
    man = oci.image([L1, L2], compression="gzip")
    root = write_dir(tmp_path / "layout", oci.layout([man]))
    with src.open_source(root, tmp_path / "tmp") as image:
        assert image.kind is src.SourceKind.OCI_LAYOUT
        assert image.config.env == ["PATH=/bin", "A=1"] and image.config.cmd == ["sh"]
        assert image.config.workdir == "/w" and image.created == "2024-01-02T03:04:05Z"
        assert [ls.diff_id for ls in image.layers] == [sha(L1), sha(L2)]
        blobs = read_layers(image)
        assert [ls.blob_digest for ls in image.layers] == [sha(b) for b in blobs]
        assert [ls.media_type for ls in image.layers] == [LAYER_TYPES["gzip"]] * 2


def test_index_picks_the_host_platform_and_follows_nested_indexes(tmp_path: Path) -> None:
    oci = Oci()
    other = oci.image([L1], arch="s390x" if HOST_ARCH != "s390x" else "amd64", config={"Cmd": ["other"]})
    mine = oci.image([L2], arch=HOST_ARCH, config={"Cmd": ["mine"]})
    attestation = oci.desc(OCI_MANIFEST, b"{}", platform={"os": "unknown", "architecture": "unknown"})
    nested = oci.desc(OCI_INDEX, json.dumps({"schemaVersion": 2, "manifests": [other, mine, attestation]}).encode())
    root = write_dir(tmp_path / "layout", oci.layout([nested]))
    with src.open_source(root, tmp_path / "tmp") as image:
        assert image.config.cmd == ["mine"]
        assert [ls.diff_id for ls in image.layers] == [sha(L2)]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_oci_archive(tmp_path: Path, compression: str) -> None:
    oci = Oci()
    man = oci.image([L1, L2], compression="zstd")
    path = write_tar(tmp_path / "img.tar", oci.layout([man]), compression)
    tmp = tmp_path / "tmp"
    with src.open_source(path, tmp) as image:
        assert image.kind is src.SourceKind.OCI_ARCHIVE
        assert [sha(b) for b in read_layers(image)] == [ls.blob_digest for ls in image.layers]
    assert not tmp.exists() or not any(tmp.iterdir())  # a compressed archive's unpack is gone


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_docker_save(tmp_path: Path, compression: str) -> None:
    path = write_tar(tmp_path / "saved.tar", docker_save([L1, L2, L1], link_last=True), compression)
    with src.open_source(path, tmp_path / "tmp") as image:
        assert image.kind is src.SourceKind.DOCKER_SAVE
        assert image.config.entrypoint == ["/bin/sh", "-c"] and image.config.cmd == ["echo hi"]
        assert read_layers(image) == [L1, L2, L1]
        assert [ls.diff_id for ls in image.layers] == [sha(L1), sha(L2), sha(L1)]


# -- refusals ----------------------------------------------------------------------------------


def test_a_tampered_manifest_is_refused(tmp_path: Path) -> None:
    oci = Oci()
    man = oci.image([L1])
    files = oci.layout([man])
    name = f"blobs/sha256/{man['digest'].split(':')[1]}"
    files[name] = files[name].replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    root = write_dir(tmp_path / "layout", files)
    with pytest.raises(ArchiveError, match="does not match its digest"), src.open_source(root, tmp_path):
        pass


def test_diff_ids_must_match_the_layers(tmp_path: Path) -> None:
    oci = Oci()
    man = oci.image([L1, L2], diff_ids=[f"sha256:{sha(L1)}"])
    root = write_dir(tmp_path / "layout", oci.layout([man]))
    with pytest.raises(ArchiveError, match="diff_ids"), src.open_source(root, tmp_path):
        pass


def test_encrypted_layers_are_refused(tmp_path: Path) -> None:
    oci = Oci()
    man = oci.image([L1])
    manifest = json.loads(oci.blobs[man["digest"].split(":")[1]])
    manifest["layers"][0]["mediaType"] += "+encrypted"
    man = oci.desc(OCI_MANIFEST, json.dumps(manifest).encode())
    root = write_dir(tmp_path / "layout", oci.layout([man]))
    with pytest.raises(ArchiveError, match="unsupported media type"), src.open_source(root, tmp_path):
        pass


def test_hostile_names_in_a_compressed_archive_are_refused(tmp_path: Path) -> None:
    oci = Oci()
    files = {**oci.layout([oci.image([L1])]), "../evil": b"x"}
    path = write_tar(tmp_path / "img.tar.gz", files, "gzip")
    with pytest.raises(ArchiveError, match="'..'"), src.open_source(path, tmp_path / "tmp"):
        pass
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"just text\n" * 100, "not a (readable) tar archive"),
        (compress(b"just text\n" * 100, "gzip"), "not a (readable) tar archive"),
        (b"\0" * 10240, "the tar archive is empty"),
    ],
    ids=["text", "gzipped-text", "empty-tar"],
)
def test_not_an_image(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "thing"
    path.write_bytes(content)
    with pytest.raises(ArchiveError) as info, src.open_source(path, tmp_path):
        pass
    assert f"{path} is not an image: {why}" in info.value.message
    assert info.value.hint is not None and "oci-archive" in info.value.hint and "docker save" in info.value.hint


def test_a_checkpoint_archive_is_told_apart(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "ckpt.tar", {"config.dump": b"{}", "spec.dump": b"{}", "checkpoint/core.img": b"x"})
    with pytest.raises(ArchiveError, match="checkpoint archive"), src.open_source(path, tmp_path):
        pass


def test_missing_source_and_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError), src.open_source(tmp_path / "nope.tar", tmp_path):
        pass
    with pytest.raises(ArchiveError, match="not an image"), src.open_source(tmp_path, tmp_path):
        pass
