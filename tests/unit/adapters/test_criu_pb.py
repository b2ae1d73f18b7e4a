"""The pycriu-free reader of fs-*.img and files.img: the same directory modes as pycriu gives,
from podman's real images, and damaged images refused (ValueError), never a crash."""

from __future__ import annotations

import struct
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.adapters import criu, criu_pb

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "podman-5.4.2"


def _images(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        for ti in tar:
            name = Path(ti.name).name
            if ti.name.startswith("checkpoint/") and (name.startswith("fs-") or name == "files.img"):
                f = tar.extractfile(ti)
                assert f is not None
                (dest / name).write_bytes(f.read())
    return dest


def _pycriu_modes(images: Path) -> dict[str, int]:
    pycriu: Any = pytest.importorskip("pycriu")
    wanted: set[int] = set()
    for fs_img in images.glob("fs-*.img"):
        with fs_img.open("rb") as f:
            for entry in pycriu.images.load(f)["entries"]:
                wanted.update(int(entry[k]) for k in ("root_id", "cwd_id"))
    with (images / "files.img").open("rb") as f:
        entries = pycriu.images.load(f)["entries"]
    return {e["reg"]["name"]: int(e["reg"]["mode"]) for e in entries if e["id"] in wanted and "reg" in e}


@pytest.mark.parametrize("archive", ["counter-runc.tar", "counter-crun.tar.zst"])
def test_modes_are_pycriu_s(archive: str, tmp_path: Path) -> None:
    if archive.endswith(".zst"):
        import zstandard

        plain = tmp_path / "a.tar"
        with (FIXTURES / archive).open("rb") as src, plain.open("wb") as out:
            zstandard.ZstdDecompressor().copy_stream(src, out)
        images = _images(plain, tmp_path)
    else:
        images = _images(FIXTURES / archive, tmp_path)
    modes = criu.recorded_dir_modes(images)
    assert modes and modes == _pycriu_modes(images)
    assert all(mode & 0o170000 == 0o040000 for mode in modes.values())  # directories


def test_field_numbers_are_criu_s() -> None:
    pytest.importorskip("pycriu")
    from pycriu.images import fdinfo_pb2, fs_pb2, magic, regfile_pb2

    def numbers(msg: Any) -> dict[str, int]:
        return {f.name: f.number for f in msg.DESCRIPTOR.fields}

    assert {"cwd_id": 1, "root_id": 2}.items() <= numbers(fs_pb2.fs_entry).items()
    assert {"id": 2, "reg": 3}.items() <= numbers(fdinfo_pb2.file_entry).items()
    assert {"name": 6, "mode": 10}.items() <= numbers(regfile_pb2.reg_file_entry).items()
    assert (criu_pb.IMG_COMMON, criu_pb.FS_MAGIC, criu_pb.FILES_MAGIC) == (
        magic.by_name["IMG_COMMON"],
        magic.by_name["FS"],
        magic.by_name["FILES"],
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_damaged_entries_are_value_errors(payload: bytes) -> None:
    image = struct.pack("<IIi", criu_pb.IMG_COMMON, criu_pb.FS_MAGIC, len(payload)) + payload
    try:
        for entry in criu_pb.entries(image, criu_pb.FS_MAGIC):
            list(criu_pb.fields(entry))
    except ValueError:
        pass


def test_damaged_images_give_no_modes(tmp_path: Path) -> None:
    (tmp_path / "fs-1.img").write_bytes(struct.pack("<II", criu_pb.IMG_COMMON, criu_pb.FS_MAGIC) + b"\x10\x00")
    (tmp_path / "files.img").write_bytes(b"not an image")
    assert criu.recorded_dir_modes(tmp_path) == {}
    with pytest.raises(ValueError, match="expected type"):
        list(criu_pb.entries(struct.pack("<II", criu_pb.IMG_COMMON, criu_pb.FILES_MAGIC), criu_pb.FS_MAGIC))


def test_preload_imports_pycriu_on_its_own_thread() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threading\n"
        "from amber.adapters import criu_images\n"
        "t = criu_images.preload()\n"
        "name = t.name\n"
        "t.join()\n"
        "print(name, 'pycriu' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["amber-pycriu-import", "True"]
