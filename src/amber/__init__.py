"""amber: a container engine built for checkpoint and restore, usable as a library.

    import amber
    eng = amber.Engine(root=ROOT, runroot=RUNROOT)
    eng.import_image("busybox-rootfs.tar", "localhost/busybox:1")
    eng.run("localhost/busybox:1", ["sh", "-c", "sleep 1000"], name="web", detach=True, runtime="crun")
    eng.checkpoint("web", export="web.tar.zst")
    c = eng.restore_archive("web.tar.zst", name="web2")

Every error is an `AmberError` subclass with a message, a hint and an exit code (docs/api.md).
The names below are imported on first use, so `import amber` stays cheap.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (it costs 10 ms)

# The one version source: pyproject.toml reads it from here (setuptools dynamic version).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from amber.engine.api import Engine
    from amber.engine.checkpoint import CheckpointOptions, Report, RestoreOptions
    from amber.errors import (
        AmberError,
        ArchiveError,
        CommandError,
        ConflictError,
        ExitCode,
        NotFoundError,
        PreconditionError,
        RuntimeMismatchError,
        UsageError,
    )
    from amber.models import Container, Image, Status

_WHERE = {
    "Engine": "amber.engine.api",
    "Container": "amber.models",
    "Image": "amber.models",
    "Status": "amber.models",
    "Report": "amber.engine.checkpoint",
    "CheckpointOptions": "amber.engine.checkpoint",
    "RestoreOptions": "amber.engine.checkpoint",
    "AmberError": "amber.errors",
    "ArchiveError": "amber.errors",
    "CommandError": "amber.errors",
    "ConflictError": "amber.errors",
    "ExitCode": "amber.errors",
    "NotFoundError": "amber.errors",
    "PreconditionError": "amber.errors",
    "RuntimeMismatchError": "amber.errors",
    "UsageError": "amber.errors",
}

__all__ = [
    "AmberError",
    "ArchiveError",
    "CheckpointOptions",
    "CommandError",
    "ConflictError",
    "Container",
    "Engine",
    "ExitCode",
    "Image",
    "NotFoundError",
    "PreconditionError",
    "Report",
    "RestoreOptions",
    "RuntimeMismatchError",
    "Status",
    "UsageError",
    "__version__",
]


def lazy_names(package: str, where: dict[str, str], names: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports each name in `where` (name -> module) on first use and
    keeps it in `names` (the package's globals()). Raises AttributeError for any other name."""

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        names[name] = value
        return value

    return getattr_


__getattr__ = lazy_names("amber", _WHERE, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
