"""bench/ is a directory of scripts, not a package: its modules import each other by their plain
names (run.py puts bench/ on sys.path by being run from it); the tests do the same."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
