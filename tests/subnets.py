"""The tests' network subnets, never the same in two test sessions running at once.

amber gives its default network 10.89.100.0/24 when the host does not route it yet (and other
networks the first free /24 after that), and a bridge routes its subnet only once a container
starts. Two test sessions at once (two checkouts, or the lead's suite beside a helper's) gave
their roots the same subnet, and the second to start a container failed: "subnet ... is routed to
another interface". So a session takes its /24s here, from 10.89.128-254.0/24, under a lock file
in /tmp: a reservation is a file naming the process that holds it, free again once that process
has ended (its own are removed at exit). amber's own default is not changed: each test root's
default network is made on the session's subnet (tests/conftest.py `Amber`). A session's roots
share that subnet, as they shared amber's default before: an archive restored from one root into
another keeps its address.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import ipaddress
import os
from pathlib import Path

from amber.engine import net_alloc

LOCK = Path("/tmp/amber-tests-subnets.lock")
HELD = Path("/tmp/amber-tests-subnets")  # one file per reserved /24, holding its process's pid
POOL = [ipaddress.IPv4Network(f"10.89.{third}.0/24") for third in range(128, 255)]
_mine: list[Path] = []


def reserve() -> str:
    """A /24 no live test session holds and the host does not route, held by this process from
    now on. Raises AssertionError when every one of the pool is taken."""
    HELD.mkdir(mode=0o755, exist_ok=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        routed = net_alloc.host_routes()
        for net in POOL:
            mark = HELD / str(net.network_address)
            if not _held(mark) and not any(net.overlaps(r) for r in routed):
                mark.write_text(f"{os.getpid()}\n")
                _mine.append(mark)
                return str(net)
    raise AssertionError(f"every test subnet of {POOL[0]} to {POOL[-1]} is held or routed (see {HELD})")


@functools.cache
def session_default() -> str:
    """This session's subnet for the default network of each of its amber roots."""
    return reserve()


def _held(mark: Path) -> bool:
    """Is `mark`'s subnet held by a live process?"""
    try:
        pid = int(mark.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _release() -> None:
    for mark in _mine:
        with contextlib.suppress(OSError, ValueError):
            if int(mark.read_text()) == os.getpid():
                mark.unlink()
