"""ZstdWriter: segments that do not compress go to the light compressor, in frames of their own."""

from __future__ import annotations

import io
import os

import zstandard

from amber.adapters.tar import zstd_writer as zw

LINE = b": the quick brown fox jumps over the lazy dog\n"
TEXT = b"".join(b"line %08d" % n + LINE for n in range(300_000))[: 2 * zw.SEGMENT]  # the benchmark's
NOISE = os.urandom(2 * zw.SEGMENT)


def frames(data: bytes) -> list[bytes]:
    """What each zstd frame of `data` holds, in order."""
    out = []
    while data:
        dec = zstandard.ZstdDecompressor().decompressobj()
        out.append(dec.decompress(data))
        data = dec.unused_data
    return out


def written(*pieces: bytes, level: int | None = None, write: int = 1 << 20) -> bytes:
    raw = io.BytesIO()
    w = zw.ZstdWriter(raw, level)
    for piece in pieces:
        for at in range(0, len(piece), write):
            w.write(piece[at : at + write])
    w.close()
    return raw.getvalue()


def test_the_judge_tells_text_from_noise() -> None:
    assert zw.compresses(TEXT[: zw.SAMPLE])
    assert not zw.compresses(NOISE[: zw.SAMPLE])


def test_noise_goes_to_frames_of_its_own_and_text_stays_as_small_as_alone() -> None:
    out = written(TEXT, NOISE, TEXT)
    assert b"".join(frames(out)) == TEXT + NOISE + TEXT
    assert [len(f) for f in frames(out)] == [len(TEXT), len(NOISE), len(TEXT)]
    alone = len(zw.zstd_compressor(None).compress(TEXT))
    assert len(out) < len(NOISE) * 1.001 + 2.2 * alone  # noise stored, text as tight as on its own


def test_default_level_is_tuned_to_podmans_window_on_one_thread() -> None:
    out = written(TEXT)
    assert zstandard.get_frame_parameters(out).window_size == 1 << zw.TUNED_WINDOW_LOG
    assert zw.zstd_parameters(None).threads == 0
    assert zw.zstd_parameters(2).threads != 0  # other levels keep every core


def test_tiny_writes_are_judged_on_a_whole_sample() -> None:
    out = written(NOISE[: zw.SEGMENT], TEXT[: zw.SEGMENT], write=512)
    assert [len(f) for f in frames(out)] == [zw.SEGMENT, zw.SEGMENT]
    assert len(out) < zw.SEGMENT * 1.02  # the text part shrinks about a hundredfold


def test_a_frame_flush_leaves_nothing_behind_and_no_empty_frames() -> None:
    raw = io.BytesIO()
    w = zw.ZstdWriter(raw, None)
    w.write(b"header")
    w.flush(zstandard.FLUSH_FRAME)
    assert frames(raw.getvalue()) == [b"header"]  # the sample was judged and written out whole
    raw.write(zstandard.ZstdCompressor().compress(b"copied frame"))  # what archive_writer inserts
    w.write(b"tail")
    w.flush(zstandard.FLUSH_FRAME)
    w.close()
    assert frames(raw.getvalue()) == [b"header", b"copied frame", b"tail"]


def test_an_empty_stream_is_one_empty_frame() -> None:
    assert frames(written()) == [b""]
    assert frames(written(b"x")) == [b"x"]
