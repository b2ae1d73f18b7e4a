"""Step timings, logged under --debug: where a checkpoint or restore spends its time."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger("amber.timing")


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        log.debug("%s: %.3f s", step, time.monotonic() - started)
