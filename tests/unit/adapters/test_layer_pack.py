"""Stored layers packed back into OCI layer tars (for `amber image push` of ordinary images)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from amber.adapters import layer_pack, oci_layout
from amber.adapters.tar.extract import WHITEOUT_PREFIX
from amber.models import ImageConfig
from tests.unit.adapters.test_layers import d, extract, f, hard, special, sym, tar_bytes

pytestmark = pytest.mark.root  # whiteouts are 0:0 devices, and owners are kept

LAYER = [
    d("etc"),
    f("etc/.wh.deleteme", b""),
    f("etc/motd", b"hello\n", uid=1000, gid=100, mode=0o640),
    hard("etc/motd.link", "etc/motd"),
    sym("etc/localtime", "/usr/share/zoneinfo/UTC"),
    d("var/cache"),
    f("var/cache/.wh..wh..opq", b""),
    f("var/cache/new", b"n"),
    special("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
]


def packed(layer_dir: Path) -> bytes:
    out = io.BytesIO()
    layer_pack.pack_layer(layer_dir, out)
    return out.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {ti.name: ti for ti in tar.getmembers()}


def test_whiteouts_become_ocis_again_and_the_rest_is_kept(tmp_path: Path) -> None:
    layer = extract(tmp_path, tar_bytes(LAYER))
    got = members(packed(layer.path))
    assert got["etc/.wh.deleteme"].isreg() and got["etc/.wh.deleteme"].size == 0
    assert "etc/deleteme" not in got
    assert got["var/cache/.wh..wh..opq"].isreg()
    assert got["etc/motd"].uid == 1000 and got["etc/motd"].gid == 100 and got["etc/motd"].mode == 0o640
    assert got["etc/motd.link"].islnk() and got["etc/motd.link"].linkname == "etc/motd"
    assert got["etc/localtime"].issym() and got["etc/localtime"].linkname == "/usr/share/zoneinfo/UTC"
    assert got["dev/null"].ischr() and (got["dev/null"].devmajor, got["dev/null"].devminor) == (1, 3)
    assert not any(k.startswith("trusted.overlay") for ti in got.values() for k in ti.pax_headers)
    assert all(ti.uname == "" and ti.gname == "" for ti in got.values())
    names = list(got)
    assert names.index("var/cache") < names.index("var/cache/.wh..wh..opq") < names.index("var/cache/new")
    assert not any(n.split("/")[-1].startswith(WHITEOUT_PREFIX * 2) and "opq" not in n for n in names)


def test_pack_extract_pack_gives_the_same_bytes(tmp_path: Path) -> None:
    first = packed(extract(tmp_path / "a", tar_bytes(LAYER)).path)
    again = extract(tmp_path / "b", first)
    assert again.diff_id == hashlib.sha256(first).hexdigest()  # the pushed diff_id is what a pull stores
    assert packed(again.path) == first
    assert packed(again.path) == packed(again.path)


def test_image_layout_of_an_ordinary_image(tmp_path: Path) -> None:
    bottom = extract(tmp_path / "a", tar_bytes([f("bin/sh", b"#!", mode=0o755)])).path
    top = extract(tmp_path / "b", tar_bytes(LAYER)).path
    config = ImageConfig(env=["PATH=/bin"], entrypoint=[], cmd=["sh"], workdir="/srv")
    written, descs = layer_pack.write_image_layout(
        [bottom, top], tmp_path / "oci", config, tag="push", created="2026-01-01T00:00:00Z"
    )
    layout = oci_layout.read_layout_dir(written.path, tag="push")
    assert not layout.is_checkpoint
    blob = json.loads((written.path / "blobs/sha256" / written.config.digest).read_bytes())
    assert blob["config"] == {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/srv"}
    assert blob["rootfs"]["diff_ids"] == [f"sha256:{x.digest}" for x in descs]
    assert [x.media_type for x in descs] == [oci_layout.LAYER_TYPE] * 2
    assert (written.path / "blobs/sha256" / descs[1].digest).read_bytes() == packed(top)
    again, _ = layer_pack.write_image_layout(
        [bottom, top], tmp_path / "oci2", config, tag="push", created="2026-01-01T00:00:00Z"
    )
    assert again.manifest.digest == written.manifest.digest  # deterministic, down to the manifest
