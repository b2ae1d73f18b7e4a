"""`amber demo`: run, checkpoint and restore a counting container, reporting each step as an event.

The demo drives the library like any user (`Engine`'s methods); the CLI only prints the events.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amber.engine.demo_image import build_rootfs_tar
from amber.errors import AmberError

if TYPE_CHECKING:
    from amber.engine.api import Engine
    from amber.engine.archive_models import ArchiveSummary
    from amber.models import Container, Image, Status

DEMO_IMAGE = "localhost/amber-demo:latest"
DEMO_NAME = "amber-demo"
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; echo tick $i; sleep 0.2; done"
COMMAND = ["sh", "-c", COUNTER]


@dataclass(frozen=True)
class Step:
    """A new stage begins."""

    text: str


@dataclass(frozen=True)
class ImageBuilt:
    image: Image


@dataclass(frozen=True)
class Started:
    container: Container  # running, as it is a moment after the start
    runtime: str
    command: list[str]
    log_tail: list[str]  # its last lines of output


@dataclass(frozen=True)
class Checkpointed:
    archive: Path
    size: int  # bytes
    status: Status  # the container's, after the checkpoint
    counter: int  # where the counter froze
    summary: ArchiveSummary  # what the archive says about itself


@dataclass(frozen=True)
class Restored:
    container: Container
    counter_before: int  # at the checkpoint
    counter_after: int  # a moment after the restore


@dataclass(frozen=True)
class Finished:
    """The restored container was removed: the demo succeeded."""


DemoEvent = Step | ImageBuilt | Started | Checkpointed | Restored | Finished


def _counter(engine: Engine, name: str) -> int:
    c = engine.container(name)
    text = (engine.services.containers.paths(c.id).upper / "tmp" / "counter").read_text().strip()
    return int(text or "0")


def run_demo(engine: Engine, runtime: str) -> Iterator[DemoEvent]:
    """The demo's steps. Raises AmberError when the restored counter does not go on, and what
    each step raises (PreconditionError without a static busybox or root, ...)."""
    with tempfile.TemporaryDirectory(prefix="amber-demo-") as tmp:
        yield Step("Building a small image from the host's static busybox")
        image = engine.import_image(build_rootfs_tar(Path(tmp) / "rootfs.tar"), DEMO_IMAGE)
        yield ImageBuilt(image)
        if any(c.name == DEMO_NAME for c in engine.containers()):
            engine.remove(DEMO_NAME, force=True)
        yield Step(f"Running a container that counts into /tmp/counter, under {runtime}")
        engine.run(DEMO_IMAGE, COMMAND, name=DEMO_NAME, runtime=runtime, detach=True)
        time.sleep(1.5)
        lines = [line.text for line in engine.logs(DEMO_NAME)]
        yield Started(engine.container(DEMO_NAME), runtime, COMMAND, lines[-3:])
        before = _counter(engine, DEMO_NAME)
        archive = Path(tmp) / "amber-demo.tar.zst"
        yield Step(f"Checkpointing it into one portable archive (counter at {before})")
        engine.checkpoint(DEMO_NAME, export=archive)
        at_checkpoint = _counter(engine, DEMO_NAME)
        [summary] = engine.show_archives([archive])
        status = engine.container(DEMO_NAME).status
        yield Checkpointed(archive, archive.stat().st_size, status, at_checkpoint, summary)
        engine.remove(DEMO_NAME, force=True)
        yield Step("Restoring it from the archive (the runtime comes from the archive)")
        restored = engine.restore_archive(archive)
        time.sleep(1.0)
        after = _counter(engine, DEMO_NAME)
        if after <= at_checkpoint:
            raise AmberError(
                f"the restored counter of container {DEMO_NAME} did not go on ({at_checkpoint} -> {after})",
                hint=f"see its output: amber logs {DEMO_NAME}",
            )
        yield Restored(restored, at_checkpoint, after)
        yield Step("Stopping and removing it")
        engine.remove(DEMO_NAME, force=True)
        yield Finished()
