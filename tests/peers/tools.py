"""Small helpers the peers share: running a tool, a free port, waiting for a condition."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class PeerError(AssertionError):
    """A peer's command failed: the message holds the command, its exit code and its stderr."""


def have(*tools: str) -> bool:
    """Whether every tool is on PATH (or an existing absolute path)."""
    return all(Path(t).exists() if t.startswith("/") else shutil.which(t) for t in tools)


def sh(
    argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a peer's command; raises PeerError naming it when it fails and check is set."""
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise PeerError(f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.stderr.strip()}\n{p.stdout.strip()}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, ok: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ok() until it is true; raises PeerError saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise PeerError(f"{what}: not ready after {timeout:.0f} s")
