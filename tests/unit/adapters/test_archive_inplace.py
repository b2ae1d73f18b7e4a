"""Archives whose big page image went into the archive file while it was dumped (archive_inplace)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Literal

import pytest
import zstandard

from amber.adapters import archive_inplace
from amber.adapters import checkpoint_archive as ca
from amber.adapters.page_pack import PLACE_AFTER, Packed, PagePacker, Placed, packing

HEAD = {ca.AMBER_MANIFEST: b'{"a": 1}', ca.CONFIG_DUMP: b"{}", ca.SPEC_DUMP: b'{"s": 2}', "status.dump": b"{}\n"}
PAGES = [os.urandom(1 << 20) for _ in range(4)] + [b"text " * 300_000, b"x" * 1234]


def _grow(path: Path, parts: list[bytes]) -> None:
    """Append `parts` one by one, as CRIU appends pages."""
    with open(path, "wb", buffering=0) as f:
        for part in parts:
            f.write(part)


def _dump(
    work: Path, dest: Path, compressed: bool
) -> tuple[archive_inplace.Reserved, Placed | None, dict[str, Packed]]:
    """A fake dump into work/checkpoint while a packer follows it into a reserved archive file."""
    images = work / "checkpoint"
    reserved = archive_inplace.reserve(dest, None, archive_inplace.MIN_DATA_OFFSET)
    packer = PagePacker(images, work / ".packed", None, compressed=compressed, slot=reserved.slot)
    with packing(packer):
        images.mkdir(parents=True)
        (images / "inventory.img").write_bytes(b"inv")
        (images / "pagemap-1.img").write_bytes(b"map" * 100)
        (images / "pages-2.img").write_bytes(b"small" * 1000)  # stays below PLACE_AFTER
        grower = threading.Thread(target=_grow, args=(images / "pages-1.img", PAGES))
        grower.start()
        grower.join()
        (images / "zz-after.img").write_bytes(b"after")
    packed = packer.finish()
    (work / "stats-dump").write_bytes(b"stats")
    return reserved, packer.placed, packed


def _expected(work: Path) -> dict[str, bytes]:
    out = {name: data for name, data in HEAD.items()}
    for root, _dirs, files in os.walk(work):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), work)
            if not rel.startswith(".packed"):
                out[rel] = Path(root, f).read_bytes()
    return out


def _read(data: bytes, mode: Literal["r:", "r|"]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as t:
        for ti in t:
            f = t.extractfile(ti) if ti.isfile() else None
            if f is not None:
                out[ti.name] = f.read()
    return out


def _write(tmp_path: Path, compression: ca.Compression, head: dict[str, bytes] = HEAD) -> tuple[Path, Placed | None]:
    work, dest = tmp_path / "work", tmp_path / "out.tar"
    reserved, placed, packed = _dump(work, dest, compression is ca.Compression.ZSTD)
    try:
        ca.write_archive(
            dest,
            work,
            ["stats-dump", "checkpoint"],
            compression,
            head=head,
            packed=packed,
            reserved=reserved,
            placed=placed,
        )
    finally:
        reserved.discard()
    assert not reserved.tmp.exists()
    return dest, placed


@pytest.mark.parametrize(
    ("compression", "compact"),
    [(ca.Compression.NONE, False), (ca.Compression.ZSTD, False), (ca.Compression.ZSTD, True)],
)
def test_every_reader_reads_the_archive_around_the_placed_image(
    tmp_path: Path, compression: ca.Compression, compact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compact:  # this frame (4.2 MB) is moved down unless the bar is lower
        monkeypatch.setattr(archive_inplace, "COMPACT_BELOW", 0)
    dest, placed = _write(tmp_path, compression)
    assert placed is not None and placed.path.endswith("/checkpoint/pages-1.img")
    assert placed.size == sum(map(len, PAGES)) and placed.offset % 4096 == 0
    want = _expected(tmp_path / "work")
    raw = dest.read_bytes()
    tar = (
        raw
        if compression is ca.Compression.NONE
        else zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    )
    assert _read(tar, "r:") == want  # seeking
    assert _read(tar, "r|") == want  # streaming
    if compression is ca.Compression.NONE:  # the member's data is where page_pack put it
        with tarfile.open(dest) as t:
            assert t.getmember("checkpoint/pages-1.img").offset_data == placed.offset
    elif compact:  # the small frame follows the head: no padding up to the offset it was put at
        assert archive_inplace.SKIPPABLE_MAGIC.to_bytes(4, "little") not in raw[: placed.offset]
        assert len(raw) < placed.offset + placed.stored
    else:  # a skippable frame fills up to the placed frame, which is there unchanged
        skip = raw.rfind(archive_inplace.SKIPPABLE_MAGIC.to_bytes(4, "little"), 0, placed.offset)
        assert skip > 0 and int.from_bytes(raw[skip + 4 : skip + 8], "little") == placed.offset - skip - 8
        assert zstandard.ZstdDecompressor().decompressobj().decompress(raw[placed.offset :]) == b"".join(PAGES)
    names = [m.name for m in ca.list_members(dest)]  # amber's reader, metadata first
    assert names[:3] == [ca.AMBER_MANIFEST, ca.CONFIG_DUMP, ca.SPEC_DUMP]
    out = tmp_path / "x"
    ca.extract_archive(dest, out)
    for name, data in want.items():
        if name not in HEAD:
            assert (out / name).read_bytes() == data, name
    listing = subprocess.run(
        f"zstd -dc {dest} | tar -t" if compression is ca.Compression.ZSTD else f"tar -tf {dest}",
        shell=True,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(n for n in listing if not n.endswith("/")) == sorted(want)


@pytest.mark.parametrize("compression", [ca.Compression.NONE, ca.Compression.ZSTD])
def test_a_head_too_big_for_the_room_falls_back_to_the_usual_archive(
    tmp_path: Path, compression: ca.Compression
) -> None:
    big = {**HEAD, ca.SPEC_DUMP: os.urandom(archive_inplace.MIN_DATA_OFFSET).hex().encode()}
    dest, placed = _write(tmp_path, compression, big)
    assert placed is not None
    raw = dest.read_bytes()
    tar = (
        raw
        if compression is ca.Compression.NONE
        else zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    )
    assert _read(tar, "r|") == {**_expected(tmp_path / "work"), **big}
    assert [m.name for m in ca.list_members(dest)][:3] == [ca.AMBER_MANIFEST, ca.CONFIG_DUMP, ca.SPEC_DUMP]


def test_an_image_that_changed_after_the_dump_is_written_again(tmp_path: Path) -> None:
    work, dest = tmp_path / "work", tmp_path / "out.tar"
    reserved, placed, packed = _dump(work, dest, False)
    with open(work / "checkpoint" / "pages-1.img", "ab") as f:
        f.write(b"more")
    try:
        ca.write_archive(dest, work, ["checkpoint"], ca.Compression.NONE, head=HEAD, reserved=reserved, placed=placed)
    finally:
        reserved.discard()
    assert _read(dest.read_bytes(), "r|")["checkpoint/pages-1.img"] == b"".join(PAGES) + b"more"


def test_small_images_are_not_placed(tmp_path: Path) -> None:
    images = tmp_path / "checkpoint"
    images.mkdir()
    (images / "pages-1.img").write_bytes(b"p" * (PLACE_AFTER - 1))
    reserved = archive_inplace.reserve(tmp_path / "a.tar", None, archive_inplace.MIN_DATA_OFFSET)
    try:
        packer = PagePacker(images, tmp_path / ".packed", None, compressed=False, slot=reserved.slot)
        with packing(packer):
            pass
        assert packer.finish() == {} and packer.placed is None
    finally:
        reserved.discard()


def test_a_zstd_gap_is_never_one_to_seven_bytes() -> None:
    magic = archive_inplace.SKIPPABLE_MAGIC.to_bytes(4, "little")
    tar = b"head" * 500

    def head(room: int) -> bytes | None:
        ti = tarfile.TarInfo("checkpoint/pages-1.img")
        ti.size = 1 << 30
        return archive_inplace._zstd_head(tar, ti, 3, room)

    roomy = head(1 << 20)
    assert roomy is not None
    frame = roomy.rfind(magic)  # the head's own frame, before its skippable frame
    for room in range(frame - 2, frame + 12):
        got = head(room)
        if room < frame:
            assert got is None
            continue
        if got is None:  # a gap of 1-7 no longer head could fill: the caller writes the usual way
            assert 0 < room - frame < 8
            continue
        assert len(got) == room
        skip = got.rfind(magic)
        assert skip == -1 or len(got) - skip >= 8
        dec = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(got), read_across_frames=True)
        assert dec.read().startswith(tar)


def test_data_offset_is_aligned_and_bounded() -> None:
    assert archive_inplace.data_offset(10) == archive_inplace.MIN_DATA_OFFSET
    assert archive_inplace.data_offset(300_000) == 602_112  # 2 x, rounded up to 4096
    assert archive_inplace.data_offset(archive_inplace.MAX_DATA_OFFSET) is None
