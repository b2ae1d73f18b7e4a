"""Progress of a long tar stream: a callback called now and then from a thread (the CLI draws it)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def ticking(every: float, name: str, fn: Callable[[], None]) -> Iterator[None]:
    """Call `fn` every `every` seconds in a thread while the body runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            fn()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


Progress = Callable[[int, int], None]  # (bytes done, bytes in all): the CLI draws it, nothing prints here


@contextlib.contextmanager
def reporting(progress: Progress | None, total: int, done: Callable[[], int], every: float = 0.2) -> Iterator[None]:
    """Call `progress(done(), total)` every `every` seconds while the body runs, and once at the
    end when it succeeded. No thread without a callback."""
    if progress is None:
        yield
        return
    with ticking(every, "amber-progress", lambda: progress(min(done(), total), total)):
        yield
    progress(total, total)


__all__ = ["Progress", "reporting", "ticking"]
