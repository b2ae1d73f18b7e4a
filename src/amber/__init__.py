"""amber: a container engine built for checkpoint and restore."""

from amber.engine import Engine
from amber.errors import AmberError, ExitCode

__all__ = ["AmberError", "Engine", "ExitCode"]
__version__ = "0.1.0"
