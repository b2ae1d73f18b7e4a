"""Page images compressed while they are written, then put in the archive as their own frames."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import zstandard

from amber.adapters import checkpoint_archive as ca
from amber.adapters.page_pack import PagePacker, packing
from amber.adapters.tar.compression import open_tar_stream

HEAD = {ca.AMBER_MANIFEST: b"{}", ca.CONFIG_DUMP: b"{}", ca.SPEC_DUMP: b"{}"}


def _grow(path: Path, parts: list[bytes], written: threading.Event) -> None:
    """Append `parts` one by one, as CRIU appends pages."""
    with open(path, "wb", buffering=0) as f:
        for part in parts:
            f.write(part)
    written.set()


def _members(archive: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with open_tar_stream(io.BytesIO(archive)) as stream, tarfile.open(fileobj=stream, mode="r|") as t:
        for ti in t:
            f = t.extractfile(ti) if ti.isfile() else None
            out[ti.name] = f.read() if f is not None else b""
    return out


def _frame_size(data: bytes) -> int:
    dec = zstandard.ZstdDecompressor().decompressobj()
    dec.decompress(data)
    return len(data) - len(dec.unused_data)


def test_pages_written_during_the_pack_go_in_as_their_own_frame(tmp_path: Path) -> None:
    work = tmp_path / "work"
    images = work / "checkpoint"
    parts = [os.urandom(1 << 20) for _ in range(5)] + [b"text " * 300_000, b"x" * 1234]
    packer = PagePacker(images, work / ".packed", None)
    written = threading.Event()
    with packing(packer):
        images.mkdir(parents=True)  # the runtime makes the directory after the packer started
        (images / "inventory.img").write_bytes(b"inv")
        writer = threading.Thread(target=_grow, args=(images / "pages-1.img", parts, written))
        writer.start()
        writer.join()
    packed = packer.finish()
    assert written.is_set() and packed[str(images / "pages-1.img")].size == sum(map(len, parts))
    out = io.BytesIO()
    ca.write_archive_stream(out, work, ["checkpoint"], ca.Compression.ZSTD, head=HEAD, packed=packed)
    data = out.getvalue()
    got = _members(data)
    assert got["checkpoint/pages-1.img"] == b"".join(parts)
    assert got["checkpoint/inventory.img"] == b"inv"
    assert _count_frames(data) == 3  # before the pages, the pages, after them


def test_a_file_that_changed_after_the_pack_is_compressed_again(tmp_path: Path) -> None:
    work = tmp_path / "work"
    images = work / "checkpoint"
    images.mkdir(parents=True)
    (images / "pages-1.img").write_bytes(b"a" * 10_000)
    packer = PagePacker(images, work / ".packed", 3)
    with packing(packer):
        pass
    packed = packer.finish()
    with open(images / "pages-1.img", "ab") as f:
        f.write(b"b" * 100)
    out = io.BytesIO()
    ca.write_archive_stream(out, work, ["checkpoint"], ca.Compression.ZSTD, head=HEAD, packed=packed)
    assert _members(out.getvalue())["checkpoint/pages-1.img"] == b"a" * 10_000 + b"b" * 100
    assert _count_frames(out.getvalue()) == 1


def test_no_images_directory_packs_nothing(tmp_path: Path) -> None:
    packer = PagePacker(tmp_path / "never", tmp_path / ".packed", None)
    with packing(packer):
        pass
    assert packer.finish() == {}


def _count_frames(data: bytes) -> int:
    n, at = 0, 0
    while at < len(data):
        at += _frame_size(data[at:])
        n += 1
    return n
