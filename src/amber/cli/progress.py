"""A progress bar on stderr for long work (exports, imports): bytes, rate, time left.

Drawn only when stderr is a terminal and --quiet is not given; otherwise the callback is None and
nothing is drawn. The engine and adapters only call `bar(done, total)`; all printing is here.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from amber.cli.output import human_size

WIDTH = 24


def _clock(seconds: float) -> str:
    s = max(int(seconds), 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(label: str, done: int, total: int, elapsed: float) -> str:
    """One line: `label [#####-----]  12.0 MiB / 40.0 MiB  3.0 MiB/s  0:00:09 left`."""
    frac = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(frac * WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate > 0 and total > done else 0.0
    return (
        f"{label} [{'#' * filled}{'-' * (WIDTH - filled)}] {human_size(done)} / {human_size(total)}"
        f"  {human_size(int(rate))}/s  {_clock(left)} left"
    )


class ProgressBar:
    """A callable `(done, total)` that redraws one line on `stream`; `close()` ends the line."""

    def __init__(self, label: str, stream: TextIO, *, every: float = 0.1) -> None:
        self.label = label
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0
        self.drawn = False
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self.last < self.every and done < total:
                return
            self.last = now
            self.stream.write("\r\x1b[K" + render(self.label, done, total, now - self.started))
            self.stream.flush()
            self.drawn = True

    def close(self) -> None:
        with self._lock:
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = False


def progress_bar(label: str, *, quiet: bool = False, stream: TextIO | None = None) -> ProgressBar | None:
    """A bar on `stream` (default stderr) when it is a terminal and not `quiet`, else None."""
    out = stream if stream is not None else sys.stderr
    if quiet or not out.isatty():
        return None
    return ProgressBar(label, out)
