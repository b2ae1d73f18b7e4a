"""Starting the kernel's writeback of a file's dirty pages early, so that a final fsync is short."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, do not wait

StartWriteback = Callable[[int, int, int], object]  # (fd, offset, length; 0: to the end)


def sync_file_range() -> StartWriteback | None:
    """libc's sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE), or None where libc
    lacks it. It leaves the pages in the page cache (a read right after does not go to the disk);
    its result is not checked: an error only means no early writeback, the final fsync reports."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd, offset, length: call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


__all__ = ["StartWriteback", "sync_file_range"]
