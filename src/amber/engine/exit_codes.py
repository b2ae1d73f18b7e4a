"""Exit codes as conmon records them: never lost, waited for while conmon still lives."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from amber.engine.store import now
from amber.layout import ContainerLayout, Layout


def recorded_exit(p: ContainerLayout) -> tuple[int, str] | None:
    """(exit code, when) from conmon's exit file, None while there is none."""
    with contextlib.suppress(ValueError, OSError):
        text = p.exit_file.read_text().strip()
        if text:
            return int(text), datetime.fromtimestamp(p.exit_file.stat().st_mtime, UTC).isoformat()
    return None


def exit_status(p: ContainerLayout, grace: float = 2.0) -> tuple[int, str]:
    """(exit code, when) that conmon recorded for a container the runtime no longer runs; -1
    and now when it recorded none.

    conmon writes the exit file just after it reaps the container, so the runtime can report
    the container stopped a moment before the file is there: while conmon lives, wait for it
    (on a loaded host that takes seconds: up to 30 s or `grace`, the longer).
    """
    started = time.monotonic()
    while True:
        found = recorded_exit(p)
        if found is not None:
            return found
        waited = time.monotonic() - started
        if waited > max(grace, 30.0) or not alive(p.conmon_pidfile):
            found = recorded_exit(p)  # conmon writes the file before it exits
            if found is not None:
                return found
            return -1, now()
        time.sleep(0.02)


def alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def cleanup_command(layout: Layout, cid: str) -> list[str]:
    """What conmon runs when a --rm container exits: `amber container cleanup --rm CID` (this
    amber, on these roots), which removes it unless a checkpoint stopped it."""
    import amber

    src = str(Path(amber.__file__).resolve().parent.parent)
    code = "import sys; sys.path.insert(0, sys.argv[1]); from amber.cli import main; sys.exit(main(sys.argv[2:]))"
    return [
        sys.executable,
        "-c",
        code,
        src,
        "--root",
        str(layout.root),
        "--runroot",
        str(layout.runroot),
        "container",
        "cleanup",
        "--rm",
        cid,
    ]
