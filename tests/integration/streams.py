"""Feeding an archive to `amber restore --import -` through a real pipe on stdin, in-process."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pump(fd: int, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError), open(fd, "wb", closefd=True) as w:
        w.write(data)


@contextlib.contextmanager
def piped_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes | Path) -> Iterator[None]:
    """sys.stdin reads `data` (bytes, or a file's content) from a pipe a thread writes into; the
    writer stops when the reader closes the pipe early (a refused archive)."""
    payload = data.read_bytes() if isinstance(data, Path) else data
    r, w = os.pipe()
    writer = threading.Thread(target=_pump, args=(w, payload), daemon=True)
    writer.start()
    raw = open(r, "rb", buffering=0, closefd=True)  # noqa: SIM115 - closed below
    raw.name = "<stdin>"  # what the real stdin is called
    stdin = io.TextIOWrapper(io.BufferedReader(raw))
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        yield
    finally:
        stdin.close()  # a writer still blocked gets EPIPE
        writer.join(timeout=60)
        monkeypatch.undo()
