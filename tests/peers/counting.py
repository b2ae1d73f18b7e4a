"""The counting container every interop test checkpoints, and reading its counter in each engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Amber

# Written twice: a dump that freezes the shell between the truncating open and the write of one
# file leaves the other whole, so a stopped container's counter can always be read.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; echo $i > /tmp/counter.bak; sleep 0.1; done"


def wait_counter(what: str, read: Callable[[], str], above: int = 0, timeout: float = 10.0) -> int:
    """The counter `read()` returns once it is above `above`; raises AssertionError naming `what` if it stays."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read().strip()
        if text.isdigit() and int(text) > above:
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"{what}: counter did not go above {above}")


def amber_counter(amber: Amber, name: str, above: int = 0) -> int:
    def read() -> str:
        c = amber.fresh_engine().containers.store.get(name)
        tmp = amber.engine.containers.paths(c.id).upper / "tmp"
        for path in (tmp / "counter", tmp / "counter.bak"):
            text = path.read_text().strip() if path.exists() else ""
            if text.isdigit():
                return text
        return ""

    return wait_counter(f"amber's {name}", read, above)


def amber_archive(amber: Amber, image: str, runtime: str, compress: str, out: Path, *extra: str) -> tuple[Path, int]:
    """Run the counter in amber (from `image`), export a checkpoint to `out` (`extra` options to
    amber checkpoint), remove the container.

    Returns the archive and the counter at checkpoint time (a lower bound).
    """
    amber.engine.containers.run(image, ["sh", "-c", COUNTER], name="cnt", runtime_name=runtime)
    amber_counter(amber, "cnt", 5)
    assert amber("checkpoint", "--export", str(out), "--compress", compress, *extra, "cnt") == 0
    at = amber_counter(amber, "cnt", 0)
    assert amber("rm", "-f", "cnt") == 0
    return out, at
