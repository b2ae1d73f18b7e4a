"""Checkpoint images: the OCI layout written from podman's archives, its annotations, and back."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import checkpoint_archive as archive
from amber.adapters import checkpoint_image as ci
from amber.adapters import oci_layout
from amber.adapters.podman_format import ConfigDump
from amber.errors import ArchiveError, NotFoundError
from tests.conftest import FIXTURES
from tests.hostile_corpus import CLIMB, Entry, file, hardlink, make_sentinel, snapshot, special, symlink, tar_bytes

ARCHIVES = {"counter-crun.tar.zst": "crun", "counter-runc.tar": "runc"}
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="the podman fixtures are not there")


def _blob(root: Path, desc: dict[str, Any]) -> bytes:
    assert desc["digest"].startswith("sha256:")
    data: bytes = (root / "blobs" / "sha256" / desc["digest"][7:]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == desc["digest"][7:]
    assert len(data) == desc["size"]
    return data


def _layout(tmp_path: Path, name: str) -> tuple[Path, oci_layout.WrittenLayout]:
    src = FIXTURES / name
    ann = ci.from_head(archive.read_head(src), engine_version="0.test")
    dest = tmp_path / "oci"
    return dest, oci_layout.write_layout(src, dest, ann, tmp_dir=tmp_path / "tmp", tag="v1")


def _tree(top: Path) -> dict[str, tuple[str, bytes | str]]:
    """name -> (kind, content) of every entry under `top`."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(top))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", b"")
            else:
                out[rel] = ("file", p.read_bytes())
    return out


@pytest.mark.parametrize("name", ARCHIVES)
def test_layout_digests_sizes_and_config(tmp_path: Path, name: str) -> None:
    root, written = _layout(tmp_path, name)
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == oci_layout.INDEX_TYPE
    (entry,) = index["manifests"]
    assert entry["annotations"][ci.REF_NAME] == "v1"
    assert entry["mediaType"] == oci_layout.MANIFEST_TYPE
    manifest = json.loads(_blob(root, entry))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == oci_layout.MANIFEST_TYPE
    config = json.loads(_blob(root, manifest["config"]))
    assert set(config) == {"created", "architecture", "os", "rootfs"}  # no Env, Cmd, ...
    assert config["os"] == "linux" and config["architecture"] == ci.host_facts().arch
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"  # uncompressed, as podman's
    data = _blob(root, layer)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert data[257:262] == b"ustar"
    assert written.layer.digest == layer["digest"][7:] and written.manifest.digest == entry["digest"][7:]
    assert sorted(os.listdir(root / "blobs" / "sha256")) == sorted(
        d["digest"][7:] for d in (entry, manifest["config"], layer)
    )


@pytest.mark.parametrize(("name", "runtime"), ARCHIVES.items())
def test_all_three_annotation_sets(tmp_path: Path, name: str, runtime: str) -> None:
    root, _ = _layout(tmp_path, name)
    index = json.loads((root / "index.json").read_text())
    manifest = json.loads(_blob(root, index["manifests"][0]))
    m = manifest["annotations"]
    config = archive.read_head(FIXTURES / name).config
    p, c = ci.PODMAN, ci.CRIU
    assert m[p + "runtime.name"] == runtime == m[c + "runtime.name"]  # podman keys on this one
    assert m[p + "name"] == config["name"] == m[c + "container.name"] == m[ci.CRIO_NAME]
    assert m[p + "rootfsImageID"] == config["rootfsImageID"] == m[c + "rootfsImageID"]
    assert m[p + "rootfsImageName"] == "localhost/busybox:fixture" == m[c + "rootfsImageName"]
    assert m[p + "rawImageName"] == "localhost/busybox:fixture"
    for key in ("host.arch", "host.kernel", "cgroups.version", "distribution.name"):
        assert m[p + key], key
    assert m[c + "engine.name"] == "amber" and m[c + "engine.version"] == "0.test"
    assert m[c + "cgroup.version"] == m[p + "cgroups.version"]
    for where in (index["annotations"], index["manifests"][0]["annotations"]):
        assert where[c + "container.name"] == config["name"] and where[c + "runtime.name"] == runtime
        assert where[ci.CRIO_NAME] == config["name"]
        assert not any(k.startswith(p) for k in where)
    layout = oci_layout.read_layout_dir(root)
    assert layout.is_checkpoint and layout.tag == "v1"
    assert layout.annotations.runtime == runtime and layout.annotations.name == config["name"]


@pytest.mark.parametrize("name", ARCHIVES)
def test_layer_is_lexical_and_root_owned(tmp_path: Path, name: str) -> None:
    root, written = _layout(tmp_path, name)
    with tarfile.open(root / "blobs" / "sha256" / written.layer.digest) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: [os.fsencode(p) for p in n.split("/")])
    assert {m.uid for m in members} == {0} and {m.gid for m in members} == {0}
    assert {m.uname for m in members} <= {""}
    assert not any(n.startswith(("/", "./")) for n in names)
    expected = {m.name: m.mode & 0o7777 for m in archive.list_members(FIXTURES / name)}
    assert {m.name: m.mode for m in members} == expected  # runc's 0600 checkpoint/ too, root or not


@pytest.mark.parametrize("name", ARCHIVES)
def test_round_trip_gives_identical_members(tmp_path: Path, name: str) -> None:
    root, _ = _layout(tmp_path, name)
    back = tmp_path / "back.tar"
    with oci_layout.open_layout(root, tmp_dir=tmp_path / "tmp") as layout:
        oci_layout.layer_to_archive(layout, back, tmp_dir=tmp_path / "tmp")
    head = archive.read_head(back)
    assert head.config == archive.read_head(FIXTURES / name).config
    assert [m.name for m in archive.list_members(back)][:2] == ["config.dump", "spec.dump"]
    orig, again = tmp_path / "orig", tmp_path / "again"
    archive.extract_members(FIXTURES / name, orig, lambda _n: True)
    archive.extract_members(back, again, lambda _n: True)
    for top in (orig, again):
        oci_layout.traversable(top)  # not root: runc's 0600 checkpoint/
    assert _tree(again) == _tree(orig)
    assert os.listdir(tmp_path / "tmp") == []  # work dirs are removed


def test_oci_archive_is_read_too(tmp_path: Path) -> None:
    root, written = _layout(tmp_path, "counter-runc.tar")
    tarball = tmp_path / "image.tar"
    with tarfile.open(tarball, "w") as tar:
        for n in sorted(os.listdir(root)):
            tar.add(root / n, n)
    with oci_layout.open_layout(tarball, tmp_dir=tmp_path / "tmp", tag="v1") as layout:
        assert layout.source == tarball and layout.manifest.digest == written.manifest.digest
        oci_layout.layer_to_archive(layout, tmp_path / "back.tar", tmp_dir=tmp_path / "tmp")
    assert archive.read_head(tmp_path / "back.tar").config["runtime"] == "runc"
    with pytest.raises(NotFoundError, match="no image tagged 'v2'"):
        oci_layout.read_layout_dir(root, tag="v2")


def test_the_same_files_give_the_same_layer(tmp_path: Path) -> None:
    _, first = _layout(tmp_path / "a", "counter-runc.tar")
    _, second = _layout(tmp_path / "b", "counter-runc.tar")
    assert first.layer == second.layer


# -- annotations --------------------------------------------------------------------------------


def test_annotations_round_trip() -> None:
    ann = ci.CheckpointAnnotations(
        name="web", runtime="crun", rootfs_image_name="localhost/x:1", criu_version="40201", pod_name="p"
    )
    assert ci.CheckpointAnnotations.from_dict(ann.to_dict()) == ann
    assert ci.CheckpointAnnotations.from_annotations(ann.manifest_annotations()) == ann
    assert ci.CheckpointAnnotations.from_annotations(ann.index_annotations()).runtime == "crun"
    with pytest.raises(ArchiveError, match="lacks the container name"):
        ci.CheckpointAnnotations.from_dict({"name": "web"})


def test_what_each_engine_writes_is_recognised() -> None:
    podman = {ci.PODMAN + "runtime.name": "runc", ci.PODMAN + "name": "c1"}
    assert ci.is_checkpoint_image(podman)
    assert ci.CheckpointAnnotations.from_annotations(podman) == ci.CheckpointAnnotations(name="c1", runtime="runc")
    containerd = {ci.CRIU_NAME: "c2"}  # what buildah-made images carry (checkpointctl's docs)
    assert ci.is_checkpoint_image(None, containerd)
    assert ci.CheckpointAnnotations.from_annotations(None, containerd).runtime == ""
    assert ci.CheckpointAnnotations.from_annotations({ci.CRIO_NAME: "c3"}).name == "c3"
    assert not ci.is_checkpoint_image({}, None, {"org.opencontainers.image.ref.name": "x"})
    with pytest.raises(ArchiveError, match="not a checkpoint image"):
        ci.CheckpointAnnotations.from_annotations({"a": "b"})


def test_criu_int_and_from_head(tmp_path: Path) -> None:
    assert ci.criu_int("4.2.1") == "40201" and ci.criu_int("40100") == "40100" and ci.criu_int("4.2") == "40200"
    assert ci.criu_int("x.y") == ""
    head = archive.read_head(FIXTURES / "counter-crun.tar.zst")
    facts = ci.HostFacts("amd64", "6.1", "v2", "debian", "12")
    ann = ci.from_head(head, facts=facts, runtime_version="1.21")
    assert (ann.runtime, ann.runtime_version, ann.host_kernel, ann.criu_version) == ("crun", "1.21", "6.1", "")
    bad = archive.ArchiveHead(
        head.path, head.compression, ConfigDump.from_dict({"name": "x", "runtime": ""}, "t"), {}, None, 0
    )
    with pytest.raises(ArchiveError, match="does not record"):
        ci.from_head(bad, facts=facts)
    pathy = archive.ArchiveHead(
        head.path, head.compression, ConfigDump.from_dict({"name": "x", "runtime": "/usr/bin/runc"}, "t"), {}, None, 0
    )
    assert ci.from_head(pathy, facts=facts).runtime == "runc"  # only the name of a recorded path


# -- hostile layers -------------------------------------------------------------------------------


def _image_with_layer(root: Path, layer: bytes, *, annotations: dict[str, str] | None = None) -> None:
    """An OCI layout around `layer` (digests right), marked as a checkpoint image."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    lay = {"mediaType": oci_layout.LAYER_TYPE, **put(layer)}
    config = {"mediaType": oci_layout.CONFIG_TYPE, **put(json.dumps({"os": "linux"}).encode())}
    ann = annotations if annotations is not None else {ci.PODMAN_RUNTIME: "crun", ci.CRIU_NAME: "x"}
    manifest = {"schemaVersion": 2, "config": config, "layers": [lay], "annotations": ann}
    entry = {"mediaType": oci_layout.MANIFEST_TYPE, **put(json.dumps(manifest).encode())}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _head() -> list[Entry]:
    return [file("config.dump", b'{"name": "x", "runtime": "crun"}'), file("spec.dump", b"{}")]


HOSTILE: dict[str, Callable[[str], list[Entry]]] = {
    "dotdot": lambda rel: [file(f"{CLIMB}{rel}/escape")],
    "absolute": lambda rel: [file(f"/{rel}/absolute")],
    "symlink-then-write": lambda rel: [symlink("checkpoint", "/"), file(f"checkpoint/{rel}/pwned")],
    "symlink-out-relative": lambda rel: [symlink("up", "../../../../../../../.."), file(f"up/{rel}/pwned")],
    "hardlink-out": lambda rel: [hardlink("checkpoint/victim", f"/{rel}/victim.txt")],
    "chardev": lambda rel: [special("checkpoint/dev")],
    "fifo": lambda rel: [special("checkpoint/fifo", tarfile.FIFOTYPE, 0, 0)],
    "duplicate": lambda rel: [file("checkpoint/inventory.img"), file("checkpoint/inventory.img")],
    "long-name": lambda rel: [file("checkpoint/" + "a" * 5000)],
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_layers_are_refused(tmp_path: Path, case: str) -> None:
    sentinel = make_sentinel(tmp_path / "sentinel")
    before = snapshot(sentinel)
    rel = str(sentinel).lstrip("/")
    root = tmp_path / "oci"
    _image_with_layer(root, tar_bytes([*_head(), *HOSTILE[case](rel)]))
    layout = oci_layout.read_layout_dir(root)
    with pytest.raises(ArchiveError, match="refusing member|hard link|truncated|corrupt"):
        oci_layout.layer_to_archive(layout, tmp_path / "out.tar", tmp_dir=tmp_path / "tmp")
    assert snapshot(sentinel) == before
    assert not (tmp_path / "out.tar").exists()
    assert os.listdir(tmp_path / "tmp") == []


def test_damaged_or_foreign_images_are_refused(tmp_path: Path) -> None:
    layer = tar_bytes(_head())
    _image_with_layer(tmp_path / "plain", layer, annotations={})
    layout = oci_layout.read_layout_dir(tmp_path / "plain")
    assert not layout.is_checkpoint
    with pytest.raises(ArchiveError, match="not a checkpoint image"):
        oci_layout.layer_to_archive(layout, tmp_path / "x.tar", tmp_dir=tmp_path / "tmp")
    _image_with_layer(tmp_path / "tampered", layer)
    blob = next(p for p in (tmp_path / "tampered" / "blobs" / "sha256").iterdir() if p.stat().st_size == len(layer))
    blob.write_bytes(layer[:-1] + b"\1")
    with pytest.raises(ArchiveError, match="does not match its digest"):
        oci_layout.layer_to_archive(
            oci_layout.read_layout_dir(tmp_path / "tampered"), tmp_path / "x.tar", tmp_dir=tmp_path / "tmp"
        )
    _image_with_layer(tmp_path / "nospec", tar_bytes([file("config.dump", b"{}")]))
    with pytest.raises(ArchiveError, match="lacks spec.dump"):
        oci_layout.layer_to_archive(
            oci_layout.read_layout_dir(tmp_path / "nospec"), tmp_path / "x.tar", tmp_dir=tmp_path / "tmp"
        )
    index = tmp_path / "plain" / "index.json"
    doc = json.loads(index.read_text())
    doc["manifests"][0]["size"] += 1
    index.write_text(json.dumps(doc))
    with pytest.raises(ArchiveError, match="does not match its digest or size"):
        oci_layout.read_layout_dir(tmp_path / "plain")


def test_hostile_oci_archive_is_refused(tmp_path: Path) -> None:
    sentinel = make_sentinel(tmp_path / "sentinel")
    before = snapshot(sentinel)
    evil = tmp_path / "evil.tar"
    evil.write_bytes(tar_bytes([file("index.json", b"{}"), file(f"{CLIMB}{str(sentinel).lstrip('/')}/x")]))
    with pytest.raises(ArchiveError, match="refusing member"), oci_layout.open_layout(evil, tmp_dir=tmp_path / "t"):
        pass
    assert snapshot(sentinel) == before
