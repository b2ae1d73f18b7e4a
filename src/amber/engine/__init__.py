"""amber's operations. `Engine` (engine/api.py) is the facade the CLI and library users drive;
`Services` holds the per-area services behind it (images, containers, checkpoints, archives).

Both are imported on first use: importing one engine module (amber.engine.migrate, say) must not
load the whole engine, so a command that does not need it starts fast.
"""

from __future__ import annotations

from amber import lazy_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing

if TYPE_CHECKING:
    from amber.engine.api import Engine
    from amber.engine.services import Services

_WHERE = {"Engine": "amber.engine.api", "Services": "amber.engine.services"}

__all__ = ["Engine", "Services"]


__getattr__ = lazy_names(__name__, _WHERE, globals())
