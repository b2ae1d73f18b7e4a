"""What amber writes and reads for podman and containerd (issue 13): image IDs, config.dump fields,
the root mode per target, compressed rootfs-diff.tar, the shared-PID refusal, the KIND column."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import podman_format as fmt
from amber.adapters import rootfs_diff, skopeo
from amber.cli import main
from amber.config import Layout
from amber.engine import checkpoint_images, confinement, privilege_checks
from amber.engine.archive_meta import config_dump as _config_dump
from amber.engine.archive_meta import kept_settings
from amber.engine.checkpoint import TARGETS, CheckpointOptions, _root_mode
from amber.engine.images import ImageService
from amber.errors import ArchiveError, UsageError
from amber.models import Container, Image
from tests.unit.adapters.test_image_sources import L1, Oci, docker_save, write_dir, write_tar
from tests.unit.adapters.test_layers import f, tar_bytes


@pytest.fixture
def images(tmp_path: Path) -> ImageService:
    return ImageService(Layout(tmp_path / "root", tmp_path / "run"))


def _config_blob(files: dict[str, bytes]) -> str:
    for name, data in files.items():
        if name.startswith("blobs/") or name.endswith(".json"):
            with contextlib.suppress(ValueError):
                doc = json.loads(data)
                if isinstance(doc, dict) and "rootfs" in doc:
                    return hashlib.sha256(data).hexdigest()
    raise AssertionError("no config blob")


def test_oci_and_docker_imports_keep_the_config_digest(tmp_path: Path, images: ImageService) -> None:
    oci = Oci()
    files = oci.layout([oci.image([L1])])
    image = images.import_image(write_dir(tmp_path / "layout", files), "app:oci")
    assert image.config_digest == _config_blob(files) and image.peer_id == image.config_digest
    assert images.get(image.config_digest).id == image.id  # an archive's rootfsImageID finds it
    assert images.get("sha256:" + image.config_digest).id == image.id
    saved = docker_save([L1])
    docker = images.import_image(write_tar(tmp_path / "s.tar", saved), "saved")
    assert docker.config_digest == _config_blob(saved)
    rootfs = images.import_image(write_tar(tmp_path / "r.tar", {"etc/motd": b"x"}), "plain")
    assert rootfs.config_digest == "" and rootfs.peer_id == rootfs.id


def test_image_records_without_the_new_fields_still_load() -> None:
    old = {"id": "a" * 64, "names": ["localhost/x:1"], "layers": [], "created": "", "size": 0}
    image = Image.from_dict(old)
    assert image.config_digest == "" and image.repo_digest == "" and image.peer_id == "a" * 64
    assert Image.from_dict(image.to_dict()) == image


def _container(**kw: Any) -> Container:
    base = dict(
        id="c" * 64,
        name="web",
        image_id="a" * 64,
        image_name="localhost/demo:latest",
        runtime="runc",
        runtime_path="/usr/bin/runc",
        command=["sh"],
        created="2026-01-01T00:00:00Z",
    )
    return Container(**{**base, **kw})


def test_config_dump_carries_what_podman_and_containerd_key_on() -> None:
    image = Image(
        id="a" * 64,
        names=["127.0.0.1:5000/demo:latest"],
        layers=[],
        created="",
        size=0,
        config_digest="b" * 64,
        repo_digest="127.0.0.1:5000/demo@sha256:" + "d" * 64,
    )
    dump = _config_dump(_container(), {}, image).to_dict()
    assert dump["rootfsImageID"] == "b" * 64 and dump["amber"]["imageID"] == "a" * 64
    assert dump["rootfsImageRef"] == image.repo_digest and dump["rootfsImageName"] == "127.0.0.1:5000/demo:latest"
    assert dump["createNetNS"] is True and dump["networkMode"] == "none"
    assert dump["stopSignal"] == 15 and dump["stopTimeout"] == 10
    back = fmt.ConfigDump.from_dict(dump, "x")
    assert back.amber_image_id == "a" * 64 and back.image_refs == ("127.0.0.1:5000/demo:latest", "b" * 64)

    plain = dataclasses.replace(image, config_digest="", repo_digest="")
    dump = _config_dump(_container(), {}, plain).to_dict()
    assert dump["rootfsImageID"] == "a" * 64 and "rootfsImageRef" not in dump


def test_restore_reads_labels_and_stop_settings_back_from_config_dump() -> None:
    image = Image(id="a" * 64, names=["localhost/demo:latest"], layers=[], created="", size=0)
    c = _container(labels={"app": "web", "tier": ""}, stop_signal="HUP", stop_timeout=3.0)
    dump = _config_dump(c, {}, image).to_dict()
    assert dump["labels"] == {"app": "web", "tier": ""} and dump["stopSignal"] == 1 and dump["stopTimeout"] == 3
    kept = kept_settings(fmt.ConfigDump.from_dict(dump, "x"))
    assert kept == {"labels": {"app": "web", "tier": ""}, "stop_signal": "HUP", "stop_timeout": 3.0}
    # podman's archive as podman writes it (numbers), and one that records none of them
    podman = fmt.ConfigDump.from_dict({"labels": {"a": "1"}, "stopSignal": 9, "stopTimeout": 0}, "x")
    assert kept_settings(podman) == {"labels": {"a": "1"}, "stop_signal": "KILL", "stop_timeout": 0.0}
    bare = fmt.ConfigDump.from_dict({"labels": ["x"], "stopSignal": 999, "stopTimeout": -1}, "x")
    assert kept_settings(bare) == {"labels": {}, "stop_signal": "TERM", "stop_timeout": 10.0}


def test_root_mode_per_target(tmp_path: Path) -> None:
    root = tmp_path / "merged"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    for target, mode in TARGETS.items():
        with _root_mode(root, mode):
            assert stat.S_IMODE(root.stat().st_mode) == mode, target
        assert stat.S_IMODE(root.stat().st_mode) == 0o755  # as it was, after the dump
    with _root_mode(tmp_path / "missing", 0o555):  # no root to adjust: nothing to do
        pass
    assert TARGETS["podman"] == 0o555 and TARGETS["containerd"] == 0o755
    with pytest.raises(UsageError, match="--target"):
        CheckpointOptions(target="cri-o").validate(1)


@pytest.mark.root
def test_a_gzip_compressed_rootfs_diff_applies(tmp_path: Path) -> None:
    diff = tmp_path / "rootfs-diff.tar"
    diff.write_bytes(gzip.compress(tar_bytes([f("tmp/counter", b"41\n")])))
    root = tmp_path / "root"
    root.mkdir()
    rootfs_diff.apply_rootfs_diff(diff, root)
    assert (root / "tmp/counter").read_bytes() == b"41\n"


def test_a_shared_pid_namespace_is_refused_even_trusted() -> None:
    spec = {"linux": {"namespaces": [{"type": "pid", "path": "/proc/42/ns/pid"}, {"type": "mount"}]}}
    with pytest.raises(ArchiveError, match="pod sharing one PID namespace") as refused:
        privilege_checks.check_spec(spec, "ctd.tar", trust=True)
    assert refused.value.exit_code == 6
    privilege_checks.refuse_shared_pid({"linux": {"namespaces": [{"type": "pid"}]}}, "ok.tar")  # its own: fine
    privilege_checks.refuse_shared_pid({"linux": {"namespaces": "junk"}}, "odd.tar")  # shape checked elsewhere


def test_a_pod_sandboxs_ipc_and_uts_namespaces_are_no_violation() -> None:
    from .test_confinement import amber_spec

    archive = amber_spec()
    for ns in archive["linux"]["namespaces"]:
        if ns["type"] in ("ipc", "uts"):
            ns["path"] = "/proc/7/ns/" + ns["type"]
    confined = confinement.confine(archive, amber_spec())
    assert not [v for v in confined.violations if v.field == "linux.namespaces.path"]
    assert all("path" not in ns for ns in confined.spec["linux"]["namespaces"] if ns["type"] != "network")


def test_repo_digest_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def inspect(ref: str, **_: Any) -> dict[str, Any]:
        seen.append(ref)
        return {"Digest": "sha256:" + "e" * 64}

    monkeypatch.setattr(skopeo, "inspect", inspect)
    got = checkpoint_images._repo_digest("127.0.0.1:5000/demo:latest", tls_verify=False, timeout=5)
    assert got == "127.0.0.1:5000/demo@sha256:" + "e" * 64 and seen == ["docker://127.0.0.1:5000/demo:latest"]
    pinned = "127.0.0.1:5000/demo@sha256:" + "f" * 64
    assert checkpoint_images._repo_digest(pinned, tls_verify=False, timeout=5) == pinned


def test_image_ls_marks_checkpoint_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    assert main([*base, "image", "import", str(write_tar(tmp_path / "r.tar", {"etc/motd": b"x"})), "plain"]) == 0
    iid = capsys.readouterr().out.strip()
    assert main([*base, "images"]) == 0
    assert "KIND" not in capsys.readouterr().out  # podman's columns while there is no checkpoint image
    marker = tmp_path / "root" / "images" / "checkpoints" / f"{iid}.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"id": iid, "annotations": {"name": "web", "runtime": "runc"}}))
    assert main([*base, "images"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0][-1] == "KIND" and rows[1][0] == "localhost/plain:latest" and rows[1][-1] == "checkpoint"
    assert main([*base, "run", "plain", "sh"]) == 2
    assert "checkpoint image" in capsys.readouterr().err
    assert main([*base, "rmi", "plain"]) == 0
    assert not marker.exists()  # rmi forgets it
