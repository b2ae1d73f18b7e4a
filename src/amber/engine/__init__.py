"""amber's operations. `Engine` (engine/api.py) is the facade the CLI and library users drive;
`Services` holds the per-area services behind it (images, containers, checkpoints, archives)."""

from amber.engine.api import Engine
from amber.engine.services import Services

__all__ = ["Engine", "Services"]
