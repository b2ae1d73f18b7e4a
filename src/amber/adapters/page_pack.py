"""Compressing CRIU's page images while CRIU writes them: the dump and the compression overlap.

CRIU appends each process's memory to images/pages-<id>.img, start to end, never rewriting what
it wrote (a read below the file's size sees final data). A thread follows each such file as it
grows and compresses it into its own zstd frame, in a side file beside the images. When CRIU is
done, the archive writer (archive_writer, TarWriter) ends its own frame after the member's header,
copies the side frame as it is, and goes on in a new frame: the archive is one tar in a few zstd
frames, which every zstd reader (podman's, checkpointctl's, containerd's, amber's) reads as one
stream. A side frame whose file changed after CRIU ended is not used (the file is compressed
again as usual).

With a `Slot` (an export to a regular file: archive_inplace), the first page image to grow past
PLACE_AFTER bytes is not put in a side file: its bytes (uncompressed) or its frame (zstd) go
straight into the archive file at the slot's offset, where its tar member's data will be, and
the kernel starts writing them to disk during the dump. CRIU dumps the tasks one after another,
so the first big image is, as a rule, the container's big one; the others go the side way
(zstd), or are copied by the archive writer later (uncompressed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import zstandard

from amber.adapters.tar.compression import CHUNK
from amber.adapters.tar.zstd_writer import ZstdWriter
from amber.adapters.writeback import sync_file_range

log = logging.getLogger("amber.page_pack")
PAGES_PREFIX = "pages-"
READ_SIZE = CHUNK
POLL = 0.005  # seconds between looks at the images when CRIU wrote nothing new
PLACE_AFTER = 4 << 20  # bytes a page image has when it is chosen to go into the archive in place
STEP_MAX = 8 << 20  # bytes one step of an in-place copy takes (the other images get their turn)
WRITEBACK_EVERY = 32 << 20  # bytes written in place between two starts of their writeback


@dataclasses.dataclass(frozen=True)
class Packed:
    """One image file, compressed: `size` raw bytes, as one zstd frame in `frame`."""

    size: int
    frame: Path


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where in the archive file `fd` (open for writing) one page image's data goes."""

    fd: int
    offset: int


@dataclasses.dataclass(frozen=True)
class Placed:
    """One image file already in the archive file at `offset`: `size` raw bytes, stored there as
    `stored` bytes (the same bytes, or one zstd frame of them when `compressed`)."""

    path: str
    size: int
    stored: int
    offset: int
    compressed: bool


class _At:
    """A writer into file `fd` from `offset` on (pwrite), starting writeback as it goes."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.start = self.pos = self.synced = offset
        self.writeback = sync_file_range()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            self.pos += n
            view = view[n:]
        self.wrote()
        return len(data)

    def wrote(self) -> None:
        """Bytes up to `pos` are written: start their writeback now and then."""
        if self.writeback is not None and self.pos - self.synced >= WRITEBACK_EVERY:
            self.writeback(self.fd, self.synced, self.pos - self.synced)
            self.synced = self.pos

    def flush(self) -> None:
        pass


class _Follower:
    """One growing image file and the zstd frame its bytes go into."""

    def __init__(self, path: Path, frame: Path, level: int | None) -> None:
        self.path = path
        self.frame = frame
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.out = open(frame, "wb", buffering=CHUNK)  # noqa: SIM115 - closed in close()
        self.packer = ZstdWriter(self.out, level, write_size=CHUNK)
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


class _Placer:
    """One growing image file whose bytes, or their zstd frame (`level` given), go into the
    archive file at the slot (sendfile for raw bytes: no copy through user space)."""

    def __init__(self, path: Path, slot: Slot, level: int | None, compressed: bool) -> None:
        self.path = path
        self.slot = slot
        self.compressed = compressed
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.at = _At(slot.fd, slot.offset)
        self.packer = ZstdWriter(self.at, level, write_size=CHUNK) if compressed else None
        self.size = 0
        self.buf = bytearray(READ_SIZE)
        self.kernel_copy = not compressed

    def step(self) -> int:
        """Put what CRIU added since the last step into the archive file; the bytes taken."""
        if self.packer is not None:
            n = os.readv(self.fd, [self.buf])
            if n:
                self.packer.write(memoryview(self.buf)[:n])
        else:
            n = self._copy(min(os.fstat(self.fd).st_size - self.size, STEP_MAX))
        self.size += n
        return n

    def _copy(self, count: int) -> int:
        if count <= 0:
            return 0
        if self.kernel_copy:
            try:
                os.lseek(self.slot.fd, self.at.pos, os.SEEK_SET)
                n = os.sendfile(self.slot.fd, self.fd, self.size, count)
                self.at.pos += n
                self.at.wrote()
                return n
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self.kernel_copy = False
        n = os.preadv(self.fd, [memoryview(self.buf)[:count]], self.size)
        self.at.write(memoryview(self.buf)[:n])
        return n

    def placed(self) -> Placed:
        return Placed(str(self.path), self.size, self.at.pos - self.slot.offset, self.slot.offset, self.compressed)

    def close(self) -> None:
        try:
            if self.packer is not None:
                self.packer.close()  # ends the frame
        finally:
            os.close(self.fd)


class PagePacker:
    """Follows images/pages-*.img in a thread while CRIU dumps; `finish` when CRIU has exited.

    `compressed`: into zstd frames (at `level`), else (with a slot only) as they are. `slot`: the
    first image past PLACE_AFTER bytes goes into the archive file there (`placed`)."""

    def __init__(
        self, images: Path, side: Path, level: int | None, *, compressed: bool = True, slot: Slot | None = None
    ) -> None:
        self.images = images
        self.side = side
        self.level = level
        self.compressed = compressed
        self.slot = slot
        self._stop = threading.Event()
        self._followers: dict[str, _Follower | _Placer] = {}
        self._placer: _Placer | None = None
        self._ended = False  # CRIU has exited: no image is waiting to be chosen any more
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="amber-page-pack", daemon=True)

    def start(self) -> None:
        if self.compressed:
            self.side.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def _look(self) -> None:
        try:
            names = [n for n in os.listdir(self.images) if n.startswith(PAGES_PREFIX) and n.endswith(".img")]
        except FileNotFoundError:
            return  # the runtime has not made the images directory yet
        for name in sorted(names):
            if name in self._followers:
                continue
            path = self.images / name
            if self.slot is not None and self._placer is None and os.stat(path).st_size >= PLACE_AFTER:
                self._placer = _Placer(path, self.slot, self.level, self.compressed)
                self._followers[name] = self._placer
                log.debug("page pack: %s goes into the archive file at %d as CRIU writes it", path, self.slot.offset)
            elif self.slot is not None and self._placer is None and not self._ended:
                continue  # small so far: it may still become the big one
            elif self.compressed:
                self._followers[name] = _Follower(path, self.side / f"{name}.zst", self.level)

    def _step(self) -> int:
        self._look()
        return sum(f.step() for f in list(self._followers.values()))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._step():
                    self._stop.wait(POLL)
            self._ended = True
            while self._step():  # CRIU has exited: what it wrote last
                pass
        except (OSError, zstandard.ZstdError) as exc:  # reported by finish(); the archive is made as usual
            self._error = exc
        finally:
            for f in self._followers.values():
                try:
                    f.close()
                except (OSError, zstandard.ZstdError) as exc:  # the frame may be incomplete
                    self._error = self._error or exc

    def stop(self) -> None:
        """Take what CRIU wrote last, end the frames, join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            started = time.monotonic()
            self._thread.join()
            log.debug("page pack: done %.3f s after CRIU ended", time.monotonic() - started)

    def finish(self) -> dict[str, Packed]:
        """CRIU has exited: the frames of the page images, by path (empty after an error, which
        is logged: the archive writer then compresses the images itself)."""
        self.stop()
        if self._error is not None:
            log.warning("compressing the page images during the dump failed: %s", self._error)
            return {}
        return {str(f.path): Packed(f.size, f.frame) for f in self._followers.values() if isinstance(f, _Follower)}

    @property
    def placed(self) -> Placed | None:
        """The image put into the archive file in place (after `finish`; None after an error)."""
        if self._error is not None or self._placer is None:
            return None
        return self._placer.placed()


@contextlib.contextmanager
def packing(packer: PagePacker) -> Iterator[PagePacker]:
    """`packer` started; stopped (its thread joined) however the body ends."""
    packer.start()
    try:
        yield packer
    finally:
        packer.stop()


__all__ = ["PLACE_AFTER", "Packed", "PagePacker", "Placed", "Slot", "packing"]
