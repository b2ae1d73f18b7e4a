"""amber's zstd: the parameters of each level, and the writer that keeps data which does not
compress away from the costly ones.

Levels 3 and 4 are tuned the way podman's Go encoder works (README "Speed", measured against
podman's archives): an 8 MiB window (podman's) and matches from 4 bytes, because memory pages
repeat at a distance and in short runs. They run on one thread: on 2 cores the dump (CRIU) has
the other, and one 8 MiB window per thread cost 30-70 MiB of RSS. Measured here on 256 MiB in
tmpfs, python-zstandard 0.25: numbered text lines (the benchmark's) 2.58 MB in 0.26 s, one
thread, 27 MiB RSS (podman's archive: 2.57 MB; libzstd's level 2 on every core 3.05 MB in
0.18 s, 39 MiB); random data 0.53 s one thread, 0.38 s and 94 MiB on every core.

Random data gains nothing from any level, so ZstdWriter looks at each SEGMENT before it
compresses it: when level 1 cannot take LIGHT_RATIO off a SAMPLE of it, the segment goes to a
light compressor (level 1, one thread: 256 MiB of random data in 0.29 s, 21 MiB RSS), in a
frame of its own. A reader sees one stream across frames (podman, checkpointctl, containerd,
amber)."""

from __future__ import annotations

from typing import IO, Any

import zstandard

from amber.adapters.tar.formats import DEFAULT_LEVELS, Compression

DEFAULT_LEVEL = DEFAULT_LEVELS[Compression.ZSTD]
TUNED_LEVELS = range(3, 5)
TUNED_WINDOW_LOG = 23
TUNED_MIN_MATCH = 4
LIGHT_LEVEL = 1
SEGMENT = 8 << 20  # bytes of input judged as one: compressible or not
SAMPLE = 64 << 10  # bytes from the start of a segment that judge it
LIGHT_RATIO = 0.9  # a sample level 1 keeps more of than this goes to the light compressor
WRITE_SIZE = 1 << 20


def zstd_parameters(level: int | None) -> zstandard.ZstdCompressionParameters:
    """The parameters amber's zstd compresses with at `level` (None: the default)."""
    chosen = DEFAULT_LEVEL if level is None else level
    if chosen not in TUNED_LEVELS:
        return zstandard.ZstdCompressionParameters.from_level(chosen, threads=-1)
    return zstandard.ZstdCompressionParameters.from_level(
        chosen, window_log=TUNED_WINDOW_LOG, min_match=TUNED_MIN_MATCH, threads=0
    )


def zstd_compressor(level: int | None) -> zstandard.ZstdCompressor:
    """amber's zstd compressor at `level` (None: the default), for data known to compress."""
    return zstandard.ZstdCompressor(compression_params=zstd_parameters(level))


def compresses(sample: bytes | bytearray | memoryview, probe: zstandard.ZstdCompressor | None = None) -> bool:
    """Whether level 1 (`probe`, a level-1 compressor to reuse) takes more than 1 - LIGHT_RATIO
    off `sample`."""
    probe = probe or zstandard.ZstdCompressor(level=LIGHT_LEVEL)
    return len(probe.compress(sample)) <= LIGHT_RATIO * len(sample)


class ZstdWriter:
    """A zstd stream into `raw` (left open) at `level`, each SEGMENT by the compressor that suits
    it (see the module's doc). `flush(zstandard.FLUSH_FRAME)` ends the frame being written (the
    next byte starts a new one); `close` ends the stream. Nothing is ever held back past a flush."""

    def __init__(self, raw: IO[bytes] | Any, level: int | None, *, write_size: int = WRITE_SIZE) -> None:
        self._raw = raw
        self._level = level
        self._write_size = write_size
        self._writers: dict[bool, Any] = {}  # light or not -> its stream writer, made when needed
        self._light: bool | None = None  # the current segment's choice; None: not judged yet
        self._open: bool | None = None  # the choice whose frame is open; None: no frame open
        self._left = 0  # bytes of the current segment still to come
        self._sample = bytearray()
        self._probe = zstandard.ZstdCompressor(level=LIGHT_LEVEL)  # judges every segment's sample
        self._wrote = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        while view:
            if self._light is None:
                take = min(len(view), SAMPLE - len(self._sample))
                self._sample += view[:take]
                view = view[take:]
                if len(self._sample) == SAMPLE:
                    self._judge()
                continue
            n = min(len(view), self._left)
            self._put(view[:n])
            view = view[n:]
        return len(data)

    def flush(self, mode: int = zstandard.FLUSH_BLOCK) -> None:
        if self._sample:
            self._judge()
        if self._open is None:
            return
        self._writers[self._open].flush(mode)
        if mode == zstandard.FLUSH_FRAME:
            self._open = None

    def close(self) -> None:
        """End the stream: the open frame, or one empty frame if nothing was written at all."""
        self.flush(zstandard.FLUSH_FRAME)
        if not self._wrote:
            self._writer(False).flush(zstandard.FLUSH_FRAME)

    def _judge(self) -> None:
        """Choose the compressor of the segment that starts with the sample, and write the sample."""
        self._light = not compresses(self._sample, self._probe)
        self._left = SEGMENT
        sample, self._sample = self._sample, bytearray()
        self._put(memoryview(sample))

    def _put(self, view: memoryview) -> None:
        assert self._light is not None
        if self._open is not None and self._open != self._light:
            self._writers[self._open].flush(zstandard.FLUSH_FRAME)
        self._open = self._light
        self._writer(self._light).write(view)
        self._wrote = True
        self._left -= len(view)
        if self._left <= 0:
            self._light = None

    def _writer(self, light: bool) -> Any:
        writer = self._writers.get(light)
        if writer is None:
            compressor = zstandard.ZstdCompressor(level=LIGHT_LEVEL) if light else zstd_compressor(self._level)
            writer = compressor.stream_writer(self._raw, closefd=False, write_size=self._write_size)
            self._writers[light] = writer
        return writer
