"""Compressing CRIU's page images while CRIU writes them: the dump and the compression overlap.

CRIU appends each process's memory to images/pages-<id>.img, start to end, never rewriting what
it wrote (a read below the file's size sees final data). A thread follows each such file as it
grows and compresses it into its own zstd frame, in a side file beside the images. When CRIU is
done, the archive writer (archive_writer, TarWriter) ends its own frame after the member's header,
copies the side frame as it is, and goes on in a new frame: the archive is one tar in a few zstd
frames, which every zstd reader (podman's, checkpointctl's, containerd's, amber's) reads as one
stream. A side frame whose file changed after CRIU ended is not used (the file is compressed
again as usual).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from amber.adapters.tar.compression import CHUNK, zstd_compressor

log = logging.getLogger("amber.page_pack")
PAGES_PREFIX = "pages-"
READ_SIZE = CHUNK
POLL = 0.005  # seconds between looks at the images when CRIU wrote nothing new


@dataclasses.dataclass(frozen=True)
class Packed:
    """One image file, compressed: `size` raw bytes, as one zstd frame in `frame`."""

    size: int
    frame: Path


class _Follower:
    """One growing image file and the zstd frame its bytes go into."""

    def __init__(self, path: Path, frame: Path, level: int | None) -> None:
        self.path = path
        self.frame = frame
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.out = open(frame, "wb", buffering=CHUNK)  # noqa: SIM115 - closed in close()
        self.packer: Any = zstd_compressor(level).stream_writer(self.out, closefd=False, write_size=CHUNK)
        self.size = 0
        self.buf = bytearray(READ_SIZE)

    def step(self) -> int:
        """Compress what CRIU added since the last step; the bytes taken."""
        n = os.readv(self.fd, [self.buf])
        if n:
            self.packer.write(memoryview(self.buf)[:n])
            self.size += n
        return n

    def close(self) -> None:
        try:
            self.packer.close()  # ends the frame
            self.out.close()
        finally:
            os.close(self.fd)


class PagePacker:
    """Follows images/pages-*.img in a thread while CRIU dumps; `finish` when CRIU has exited."""

    def __init__(self, images: Path, side: Path, level: int | None) -> None:
        self.images = images
        self.side = side
        self.level = level
        self._stop = threading.Event()
        self._followers: dict[str, _Follower] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="amber-page-pack", daemon=True)

    def start(self) -> None:
        self.side.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def _look(self) -> None:
        try:
            names = [n for n in os.listdir(self.images) if n.startswith(PAGES_PREFIX) and n.endswith(".img")]
        except FileNotFoundError:
            return  # the runtime has not made the images directory yet
        for name in sorted(names):
            if name not in self._followers:
                self._followers[name] = _Follower(self.images / name, self.side / f"{name}.zst", self.level)

    def _step(self) -> int:
        self._look()
        return sum(f.step() for f in list(self._followers.values()))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._step():
                    self._stop.wait(POLL)
            while self._step():  # CRIU has exited: what it wrote last
                pass
        except (OSError, zstandard.ZstdError) as exc:  # reported by finish(); the archive is made as usual
            self._error = exc
        finally:
            for f in self._followers.values():
                with contextlib.suppress(OSError):
                    f.close()

    def stop(self) -> None:
        """Take what CRIU wrote last, end the frames, join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def finish(self) -> dict[str, Packed]:
        """CRIU has exited: the frames of the page images, by path (empty after an error, which
        is logged: the archive writer then compresses the images itself)."""
        self.stop()
        if self._error is not None:
            log.warning("compressing the page images during the dump failed: %s", self._error)
            return {}
        return {str(f.path): Packed(f.size, f.frame) for f in self._followers.values()}


@contextlib.contextmanager
def packing(packer: PagePacker) -> Iterator[PagePacker]:
    """`packer` started; stopped (its thread joined) however the body ends."""
    packer.start()
    try:
        yield packer
    finally:
        packer.stop()


__all__ = ["Packed", "PagePacker", "packing"]
