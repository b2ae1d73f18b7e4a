"""podman 5.4 restores amber's archives, and amber restores podman's re-export (issue 13, part 1).

amber writes what podman needs (tests/peers/fixes.py, PODMAN_NEEDS); `test_each_change_is_needed`
takes each change back out of a copy of the archive and shows podman then refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.engine.run_options import make_options
from amber.errors import ExitCode
from tests.conftest import Amber
from tests.peers import counting
from tests.peers.archive_fix import read_json, rewrite
from tests.peers.counting import COUNTER, amber_counter, wait_counter
from tests.peers.fixes import PODMAN_NEEDS, podman_unfix
from tests.peers.oci import OciImage, build_oci_archive
from tests.peers.podman import Podman, have_podman
from tests.peers.tools import PeerError

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(not have_podman(), reason="needs podman 5 (run scripts/setup-peers.sh)"),
]

IMAGE = "localhost/demo:latest"


@pytest.fixture(scope="module")
def oci_demo(demo_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    return build_oci_archive(demo_rootfs, tmp_path_factory.mktemp("oci") / "demo.oci.tar", IMAGE)


@pytest.fixture
def podman(tmp_path: Path, oci_demo: OciImage) -> Iterator[Podman]:
    with Podman(tmp_path / "podman") as p:
        assert p.load(oci_demo) == oci_demo.image_id
        yield p


def podman_counter(podman: Podman, name: str, above: int = 0) -> int:
    return wait_counter(
        f"podman's {name}", lambda: podman("exec", name, "cat", "/tmp/counter", check=False).stdout, above
    )


def amber_archive(amber: Amber, oci_demo: OciImage, runtime: str, compress: str, out: Path) -> tuple[Path, int]:
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    return counting.amber_archive(amber, IMAGE, runtime, compress, out)


def podman_restore(podman: Podman, archive: Path, *extra: str) -> None:
    podman("container", "restore", "--import", str(archive), *extra)


@pytest.mark.parametrize(("compress", "name"), [("zstd", None), ("none", None), ("zstd", "other")])
def test_podman_restores_amber_archive_then_amber_restores_podmans_export(
    amber: Amber, podman: Podman, oci_demo: OciImage, runtime: str, tmp_path: Path, compress: str, name: str | None
) -> None:
    """Acceptance: podman restores amber's archive as amber wrote it, the counter goes on, and back in amber."""
    archive, at = amber_archive(amber, oci_demo, runtime, compress, tmp_path / "cnt.tar")
    config = read_json(archive, "config.dump")
    assert config["rootfsImageID"] == oci_demo.image_id  # podman's ID of the image
    assert config["amber"]["imageID"] == amber.engine.images.get(IMAGE).id  # amber's own, in amber's fields
    podman_restore(podman, archive, *(["--name", name] if name else []))
    target = name or "cnt"
    in_podman = podman_counter(podman, target, at)
    assert in_podman > at  # it went on from its value, it did not start again at 1
    assert podman.inspect(target)["OCIRuntime"] == runtime
    assert podman.inspect(target)["Config"]["StopTimeout"] == 10

    back = tmp_path / "from-podman.tar"
    at_podman = podman_counter(podman, target, in_podman)
    podman("container", "checkpoint", "--export", str(back), "--compress", compress, target)
    podman("rm", "-f", target)
    # podman's export records podman's network (10.88.0.0/16, routed by podman's own bridge here):
    # a new address on amber's default network
    assert amber("restore", "--import", str(back), "--name", "again", "--ignore-static-ip") == ExitCode.OK
    assert amber_counter(amber, "again", at_podman) > at_podman


@pytest.mark.parametrize("undo", range(len(PODMAN_NEEDS)), ids=["image-id", "create-netns", "root-mode"])
def test_each_change_is_needed(amber: Amber, podman: Podman, oci_demo: OciImage, tmp_path: Path, undo: int) -> None:
    """With one of PODMAN_NEEDS taken back out of amber's archive, podman refuses it: each is needed."""
    archive, _ = amber_archive(amber, oci_demo, "runc", "none", tmp_path / "cnt.tar")
    unfixed = rewrite(archive, tmp_path / "unfixed.tar", podman_unfix(undo))
    with pytest.raises(PeerError):
        podman_restore(podman, unfixed)


def test_podman_keeps_a_stop_signal_and_timeout(
    amber: Amber, podman: Podman, oci_demo: OciImage, tmp_path: Path
) -> None:
    """PODMAN_STOP: amber writes podman's defaults, so podman stops the restored container gently."""
    archive, _ = amber_archive(amber, oci_demo, "runc", "none", tmp_path / "cnt.tar")
    podman_restore(podman, archive)
    config = podman.inspect("cnt")["Config"]
    assert config["StopTimeout"] > 0 and config["StopSignal"] not in (0, "0", "")


def test_labels_and_stop_settings_go_amber_podman_amber(
    amber: Amber, podman: Podman, oci_demo: OciImage, tmp_path: Path, runtime: str
) -> None:
    """A round trip amber -> podman -> amber keeps the container's labels, stop signal and timeout:
    both read them from config.dump."""
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    opts = make_options(labels={"app": "web"}, stop_signal="HUP", stop_timeout=3)
    amber.engine.containers.run(IMAGE, ["sh", "-c", COUNTER], name="cnt", runtime_name=runtime, options=opts)
    amber_counter(amber, "cnt", 2)
    archive = tmp_path / "cnt.tar"
    assert amber("checkpoint", "--export", str(archive), "cnt") == 0
    assert amber("rm", "-f", "cnt") == 0
    podman_restore(podman, archive)
    config = podman.inspect("cnt")["Config"]
    assert config["Labels"].get("app") == "web"
    assert config["StopTimeout"] == 3 and str(config["StopSignal"]).upper().removeprefix("SIG") in ("HUP", "1")
    back = tmp_path / "from-podman.tar"
    podman("container", "checkpoint", "--export", str(back), "cnt")
    podman("rm", "-f", "cnt")
    assert amber("restore", "--import", str(back)) == ExitCode.OK
    c = amber.fresh_engine().containers.store.get("cnt")
    assert (c.labels.get("app"), c.stop_signal, c.stop_timeout) == ("web", "HUP", 3.0)


SPARSE = "truncate -s 200M /tmp/sparse && echo tail >> /tmp/sparse && "


def test_podman_restores_an_archive_with_a_sparse_file(
    amber: Amber, podman: Podman, oci_demo: OciImage, tmp_path: Path, runtime: str
) -> None:
    """amber writes a file with holes as a GNU sparse member (PAX 1.0): podman's tar reader (Go's
    archive/tar) reads it, the file is whole in podman; and amber reads podman's dense one back."""
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    amber.engine.containers.run(IMAGE, ["sh", "-c", SPARSE + COUNTER], name="cnt", runtime_name=runtime)
    at = amber_counter(amber, "cnt", 2)
    archive = tmp_path / "cnt.tar"
    assert amber("checkpoint", "--export", str(archive), "cnt") == 0
    assert archive.stat().st_size < 32 << 20  # the file's data, not its 200 MiB
    assert amber("rm", "-f", "cnt") == 0
    podman_restore(podman, archive)
    assert podman_counter(podman, "cnt", at) > at
    assert podman("exec", "cnt", "stat", "-c", "%s", "/tmp/sparse").stdout.strip() == str((200 << 20) + 5)
    assert podman("exec", "cnt", "tail", "-c", "5", "/tmp/sparse").stdout == "tail\n"
    back = tmp_path / "from-podman.tar"
    podman("container", "checkpoint", "--export", str(back), "cnt")
    podman("rm", "-f", "cnt")
    assert amber("restore", "--import", str(back), "--ignore-static-ip") == ExitCode.OK
    c = amber.fresh_engine().containers.store.get("cnt")
    restored = amber.engine.containers.paths(c.id).upper / "tmp" / "sparse"
    assert restored.stat().st_size == (200 << 20) + 5
    with open(restored, "rb") as f:
        f.seek(200 << 20)
        assert f.read() == b"tail\n"


BIG = "v=$(head -c 12000000 /dev/zero | tr '\\0' a); "  # a page image big enough to go in place


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_podman_restores_an_archive_whose_pages_went_in_place(
    amber: Amber,
    podman: Podman,
    oci_demo: OciImage,
    tmp_path: Path,
    runtime: str,
    compress: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An export whose big page image went into the archive file during the dump (a PAX comment
    record or a zstd skippable frame before it: archive_inplace) restores in podman."""
    amber.engine.images.import_image(oci_demo.path, IMAGE)
    amber.engine.containers.run(IMAGE, ["sh", "-c", BIG + COUNTER], name="cnt", runtime_name=runtime)
    at = amber_counter(amber, "cnt", 2)
    archive = tmp_path / "cnt.tar"
    caplog.set_level(logging.DEBUG, logger="amber.archive")
    assert amber("checkpoint", "--export", str(archive), "--compress", compress, "cnt") == 0
    assert any("was written in place" in r.getMessage() for r in caplog.records)
    assert amber("rm", "-f", "cnt") == 0
    podman_restore(podman, archive)
    assert podman_counter(podman, "cnt", at) > at
