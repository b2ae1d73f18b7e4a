"""The ways `amber migrate` can move memory: a module of its own, so that the command line can
offer them without importing the migration (and with it the checkpoint and restore engine)."""

from __future__ import annotations

MODES = ("copy", "page-server", "lazy")
DEFAULT_MODE = "copy"

__all__ = ["DEFAULT_MODE", "MODES"]
