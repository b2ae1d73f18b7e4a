"""Crash points for the fault tests: `AMBER_TEST_KILL_AT=<point>` makes amber SIGKILL itself there.

The tests use it to check that the next amber command finds consistent state and cleans up what
a killed one left. It has no effect unless that variable names the point.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    if os.environ.get("AMBER_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
