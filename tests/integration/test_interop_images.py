"""Checkpoint images and ordinary images through a registry, on the command line (issue 13, parts 3 and 4).

`amber checkpoint --create-image`, `amber image push` to a registry on 127.0.0.1, then podman pulls
and restores it, and a fresh amber root pulls and restores it: the counter carries on in both. A
checkpoint image asking for another runtime is refused as an archive is (exit 7).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.errors import ExitCode
from tests.conftest import Amber
from tests.peers.counting import COUNTER, amber_counter, wait_counter
from tests.peers.oci import OciImage, build_oci_archive
from tests.peers.podman import Podman, have_podman
from tests.peers.registry import Registry, have_registry
from tests.peers.tools import sh

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (have_podman() and have_registry()),
        reason="needs podman 5, docker-registry and skopeo (run scripts/setup-peers.sh)",
    ),
]

IMAGE = "localhost/demo:latest"
OTHER = {"runc": "crun", "crun": "runc"}


@pytest.fixture(scope="module")
def oci_demo(demo_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    return build_oci_archive(demo_rootfs, tmp_path_factory.mktemp("oci") / "demo.oci.tar", IMAGE)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("img-registry")) as r:
        yield r


@pytest.fixture
def podman(tmp_path: Path, oci_demo: OciImage) -> Iterator[Podman]:
    with Podman(tmp_path / "podman") as p:
        assert p.load(oci_demo) == oci_demo.image_id
        yield p


@pytest.fixture
def node2(tmp_path: Path, oci_demo: OciImage) -> Iterator[Amber]:
    """Another amber root (another node, as far as state goes) with the checkpoint's base image."""
    other = Amber(tmp_path / "node2" / "root", tmp_path / "node2" / "run")
    try:
        other.engine.images.import_image(oci_demo.path, IMAGE)
        yield other
    finally:
        other.cleanup()


def test_create_image_push_then_podman_and_a_fresh_amber_restore_it(
    amber: Amber,
    podman: Podman,
    node2: Amber,
    oci_demo: OciImage,
    registry: Registry,
    runtime: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    amber.engine.containers.run(IMAGE, ["sh", "-c", COUNTER], name="web", runtime_name=runtime)
    amber_counter(amber, "web", 5)
    assert amber("checkpoint", "--create-image", "localhost/ckpt:1", "web") == ExitCode.OK
    at = amber_counter(amber, "web", 0)
    capfd.readouterr()
    assert amber("image", "ls") == ExitCode.OK
    listed = [line.split() for line in capfd.readouterr().out.splitlines()]
    assert any(row[0] == "localhost/ckpt:1" and row[-1] == "checkpoint" for row in listed), listed
    assert any(row[0] == IMAGE and row[-1] == "rootfs" for row in listed)
    assert amber("run", "localhost/ckpt:1", "sh") == ExitCode.USAGE  # not a root filesystem
    assert "checkpoint image" in capfd.readouterr().err
    dest = f"{registry.host}/ckpt:1"
    assert amber("image", "push", "--tls-verify=false", "localhost/ckpt:1", dest) == ExitCode.OK
    assert amber("rm", "-f", "web") == ExitCode.OK

    # podman pulls it from the registry and restores it
    podman("pull", "-q", "--tls-verify=false", dest)
    podman("--runtime", runtime, "container", "restore", dest)
    in_podman = wait_counter("podman's web", lambda: podman("exec", "web", "cat", "/tmp/counter").stdout, at)
    assert podman.inspect("web")["OCIRuntime"] == runtime

    # a fresh amber pulls it and restores it: first refused under the other runtime
    assert node2("image", "pull", "--tls-verify=false", dest) == ExitCode.OK
    capfd.readouterr()
    assert node2("restore", "--runtime", OTHER[runtime], dest) == ExitCode.RUNTIME_MISMATCH
    assert dest in capfd.readouterr().err
    assert node2("ps", "-a") == ExitCode.OK and "web" not in capfd.readouterr().out
    assert node2("restore", dest) == ExitCode.OK
    assert amber_counter(node2, "web", at) > at
    assert in_podman > at
    c = node2.engine.containers.store.get("web")
    assert c.runtime == runtime

    # rmi forgets it; the ordinary image stays
    assert node2("rm", "-f", "web") == ExitCode.OK
    assert node2("rmi", dest) == ExitCode.OK
    assert node2.engine.checkpoint_images.checkpoint_ids() == set()


def test_create_image_with_export_and_image_import(amber: Amber, oci_demo: OciImage, tmp_path: Path) -> None:
    """--create-image with --export writes both; `amber restore IMAGE` restores the image (--name)."""
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    amber.engine.containers.run(IMAGE, ["sh", "-c", COUNTER], name="web", runtime_name="runc")
    amber_counter(amber, "web", 5)
    archive = tmp_path / "web.tar"
    code = amber("checkpoint", "--create-image", "ckpt:2", "--export", str(archive), "-c", "none", "web")
    assert code == ExitCode.OK
    at = amber_counter(amber, "web", 0)
    assert archive.is_file()
    image = amber.engine.images.get("localhost/ckpt:2")
    assert image.id in amber.engine.checkpoint_images.checkpoint_ids()
    assert amber("rm", "-f", "web") == ExitCode.OK
    assert amber("restore", "localhost/ckpt:2", "--name", "again") == ExitCode.OK
    assert amber_counter(amber, "again", at) > at


def test_push_of_an_ordinary_image_then_podman_and_a_fresh_amber_pull_and_run_it(
    amber: Amber,
    podman: Podman,
    oci_demo: OciImage,
    registry: Registry,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    dest = f"{registry.host}/plain:1"
    capfd.readouterr()
    assert amber("image", "push", "--tls-verify=false", IMAGE, dest) == ExitCode.OK
    assert capfd.readouterr().out.strip() == dest
    config = json.loads(sh(["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{dest}"]).stdout)
    pushed = config["rootfs"]["diff_ids"]  # skopeo compresses the layers on the way: their tars' digests
    assert config["config"].get("Cmd") == amber.engine.images.get(IMAGE).config.cmd
    image = amber.engine.images.get(IMAGE)
    records = [json.loads((amber.root / "layers" / f"{d}.json").read_text()) for d in image.layers]
    assert [r["packed_digest"] for r in records] == pushed  # the packed layers' digests are recorded

    # podman pulls it and runs it
    podman("pull", "-q", "--tls-verify=false", dest)
    assert podman("run", "--rm", dest, "cat", "/etc/motd").stdout == "hello from amber\n"

    # a fresh amber root pulls it and runs it; pushing it on again gives the very same manifest
    other = Amber(tmp_path / "node3" / "root", tmp_path / "node3" / "run")
    try:
        assert other("image", "pull", "--tls-verify=false", dest) == ExitCode.OK
        pulled = other.engine.images.get(dest)
        assert [f"sha256:{d}" for d in pulled.layers] == pushed and pulled.config == image.config
        capfd.readouterr()
        assert other("run", "--rm", dest, "cat", "/etc/motd") == ExitCode.OK
        assert capfd.readouterr().out == "hello from amber\n"
        again = f"{registry.host}/plain:2"
        assert other("image", "push", "--tls-verify=false", dest, again) == ExitCode.OK
        digest = [f"docker://{ref}" for ref in (dest, again)]
        inspected = [json.loads(sh(["skopeo", "inspect", "--tls-verify=false", r]).stdout)["Digest"] for r in digest]
        assert inspected[0] == inspected[1]  # push, pull, push: every digest kept
    finally:
        other.cleanup()
