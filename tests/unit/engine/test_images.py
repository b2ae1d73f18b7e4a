"""ImageService: content-addressed import, names, lookup, removal; and the image commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from amber.cli import main
from amber.config import Layout
from amber.engine.images import ImageService, normalize_name
from amber.errors import ArchiveError, ConflictError, NotFoundError, UsageError
from tests.unit.adapters.test_image_sources import L1, L2, Oci, docker_save, sha, write_dir, write_tar
from tests.unit.adapters.test_layers import d, f, tar_bytes

FIXTURE = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "podman-5.4.2" / "busybox-rootfs.tar"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "root", tmp_path / "run")


@pytest.fixture
def images(layout: Layout) -> ImageService:
    return ImageService(layout)


def rootfs(tmp_path: Path, name: str = "rootfs.tar", motd: bytes = b"hello\n") -> Path:
    return write_tar(tmp_path / name, {"etc/motd": motd, "bin/sh": b"#!"})


def stored_layers(layout: Layout) -> list[str]:
    return sorted(p.name for p in layout.layers.iterdir() if p.is_dir())


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("busybox", "localhost/busybox:latest"),
        ("busybox:1.36", "localhost/busybox:1.36"),
        ("localhost/busybox:fixture", "localhost/busybox:fixture"),
        ("docker.io/library/x:1", "docker.io/library/x:1"),
        ("library/x", "localhost/library/x:latest"),
        ("registry:5000/team/app", "registry:5000/team/app:latest"),
        (f"quay.io/a/b@sha256:{'a' * 64}", f"quay.io/a/b@sha256:{'a' * 64}"),
        (f"quay.io/a/b:v1@sha256:{'a' * 64}", f"quay.io/a/b:v1@sha256:{'a' * 64}"),
    ],
)
def test_normalize(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


@pytest.mark.parametrize(
    "name",
    ["", "Busybox", "bad name", "a:b:c", "x@sha256:zz", "a//b", "-x", "x:", "a" * 64, "host/-bad", "x:" + "t" * 200],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError) as info:
        normalize_name(name)
    assert info.value.hint


# -- import --------------------------------------------------------------------------------------


@pytest.mark.root
def test_import_rootfs_then_look_it_up(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    image = images.import_image(rootfs(tmp_path), "busybox")
    assert image.names == ["localhost/busybox:latest"]
    assert image.config.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert image.size == len(b"hello\n") + 2
    for ref in ("busybox", "localhost/busybox:latest", image.id, image.id[:4], f"sha256:{image.id}"):
        assert images.get(ref) == image
    [top] = images.layer_dirs(image)
    assert (top / "etc/motd").read_bytes() == b"hello\n"
    assert top == layout.layers / image.layers[0]
    meta = json.loads((layout.layers / f"{image.layers[0]}.json").read_text())
    assert meta["size"] == image.size
    assert json.loads((layout.images / f"{image.id}.json").read_text())["names"] == image.names
    assert images.list() == [image]


@pytest.mark.root
def test_same_content_twice_is_stored_once(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    first = images.import_image(rootfs(tmp_path, "a.tar"), "one")
    second = images.import_image(
        write_tar(tmp_path / "b.tar.gz", {"etc/motd": b"hello\n", "bin/sh": b"#!"}, "gzip"), "two"
    )
    again = images.import_image(rootfs(tmp_path, "c.tar"), "one")
    assert first.id == second.id == again.id
    assert again.names == ["localhost/one:latest", "localhost/two:latest"]
    assert len(images.list()) == 1
    assert stored_layers(layout) == first.layers
    assert not [p for p in layout.layers.iterdir() if p.name.startswith(".")]


@pytest.mark.root
def test_a_name_moves_to_the_new_image(tmp_path: Path, images: ImageService) -> None:
    old = images.import_image(rootfs(tmp_path, "a.tar", b"old"), "app:1")
    new = images.import_image(rootfs(tmp_path, "b.tar", b"new"), "app:1")
    assert old.id != new.id
    assert images.get("app:1").id == new.id
    assert images.get(old.id).names == []


@pytest.mark.root
def test_oci_image_with_whiteouts_shares_layers(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    upper = tar_bytes([d("etc"), f("etc/.wh.motd", b""), d("var"), f("var/.wh..wh..opq", b""), f("var/new", b"n")])
    oci = Oci()
    root = write_dir(tmp_path / "layout", oci.layout([oci.image([L1, upper], compression="zstd")]))
    image = images.import_image(root, "localhost/app:oci")
    assert image.layers == [sha(L1), sha(upper)]
    assert image.config.cmd == ["sh"] and image.config.workdir == "/w"
    lower_dir, upper_dir = images.layer_dirs(image)
    assert (lower_dir / "etc/motd").read_bytes() == b"hello\n"
    st = os.lstat(upper_dir / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(upper_dir / "var", "trusted.overlay.opaque") == b"y"

    saved = images.import_image(write_tar(tmp_path / "s.tar", docker_save([L1, L2])), "saved")
    assert saved.layers[0] == image.layers[0]
    assert len(stored_layers(layout)) == 3
    images.remove("localhost/app:oci")
    assert stored_layers(layout) == sorted([sha(L1), sha(L2)])  # the shared layer stays
    images.remove("saved")
    assert stored_layers(layout) == [] and images.list() == []
    assert not list(layout.layers.iterdir())


@pytest.mark.root
def test_a_bad_layer_digest_leaves_nothing(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    oci = Oci()
    root = write_dir(tmp_path / "layout", oci.layout([oci.image([L1], diff_ids=[f"sha256:{'0' * 64}"])]))
    with pytest.raises(ArchiveError, match="rootfs.diff_ids"):
        images.import_image(root, "bad")
    assert list(layout.layers.iterdir()) == [] and images.list() == []


@pytest.mark.root
def test_a_hostile_layer_leaves_nothing(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    evil = tar_bytes([f("ok", b"1"), f("../../escape", b"x")])
    (tmp_path / "evil.tar").write_bytes(evil)
    with pytest.raises(ArchiveError, match="'..'"):
        images.import_image(tmp_path / "evil.tar", "evil")
    assert list(layout.layers.iterdir()) == [] and images.list() == []
    assert not (tmp_path / "escape").exists()


@pytest.mark.root
def test_fixture_busybox_rootfs(images: ImageService) -> None:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} is absent")
    image = images.import_image(FIXTURE, "localhost/busybox:fixture")
    [top] = images.layer_dirs(image)
    assert "hello" in (top / "etc/motd").read_text()
    assert os.path.islink(top / "bin/sh") or (top / "bin/sh").is_file()
    assert images.get("localhost/busybox:fixture").id == image.id


# -- lookup and removal -----------------------------------------------------------------------


def test_get_unknown(images: ImageService) -> None:
    with pytest.raises(NotFoundError) as info:
        images.get("nothing")
    assert info.value.message == "no such image: nothing"
    assert info.value.hint == "amber images lists them; import one with: amber image import ROOTFS.tar NAME"


@pytest.mark.root
def test_remove_in_use_and_untag(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    image = images.import_image(rootfs(tmp_path), "a")
    images.import_image(rootfs(tmp_path), "b")
    with pytest.raises(ConflictError, match="ctr1, ctr2"):
        images.remove(image.id, users=["ctr1", "ctr2"])
    untagged = images.remove("a", users=["ctr1"])  # a shared name: only untagged
    assert untagged.names == ["localhost/b:latest"] and images.exists(image.id)
    with pytest.raises(NotFoundError):
        images.get("a")
    with pytest.raises(ConflictError):
        images.remove("b", users=["ctr1"])
    assert images.remove("b").id == image.id
    assert not images.exists(image.id) and stored_layers(layout) == []


@pytest.mark.root
def test_missing_layer_is_reported(tmp_path: Path, images: ImageService, layout: Layout) -> None:
    image = images.import_image(rootfs(tmp_path), "a")
    os.rename(layout.layers / image.layers[0], tmp_path / "moved")
    with pytest.raises(Exception, match="is damaged"):
        images.layer_dirs(image)


# -- the commands ------------------------------------------------------------------------------


@pytest.mark.root
def test_cli_import_ls_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    assert main([*base, "image", "import", str(rootfs(tmp_path)), "busybox:t"]) == 0
    image_id = capsys.readouterr().out.strip()
    assert len(image_id) == 64
    assert main([*base, "images"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["IMAGE", "NAME", "ID", "CREATED", "SIZE"]
    assert out[1].startswith("localhost/busybox:t") and image_id[:12] in out[1]
    assert main([*base, "image", "ls", "-q"]) == 0
    assert capsys.readouterr().out.strip() == image_id[:12]
    assert main([*base, "rmi", "busybox:t", "nothing"]) == 3
    captured = capsys.readouterr()
    assert f"Deleted: {image_id}" in captured.out and "error: no such image: nothing" in captured.err
    assert main([*base, "image", "import", str(tmp_path / "missing.tar"), "x"]) == 3
    assert main([*base, "image", "import", str(tmp_path), "x"]) == 6  # a directory that is no image


def test_import_help_names_the_sources(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["image", "import", "--help"])
    out = capsys.readouterr().out
    for word in ("rootfs tarball", "OCI image layout", "oci-archive", "docker save", "registries"):
        assert word in out
