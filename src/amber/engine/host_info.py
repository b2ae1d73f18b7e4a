"""What this host offers for checkpoint/restore: CRIU, the runtimes, CRIU's config files.

`amber info` and `amber version` print it; the library returns it as a `HostInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amber.adapters import criu, runtime
from amber.adapters.runtime import RuntimeInfo
from amber.config import Settings
from amber.errors import PreconditionError

# CRIU reads these on every run; what they set overrides what the runtimes pass to CRIU.
CRIU_CONFIGS = ("/etc/criu/default.conf", "/etc/criu/runc.conf", "/etc/criu/crun.conf")


@dataclass(frozen=True)
class CriuConfig:
    path: str
    text: str


@dataclass(frozen=True)
class HostInfo:
    root: Path
    runroot: Path
    default_runtime: str
    criu_version: str  # "4.2.1"; "unknown" when CRIU does not say; "" when CRIU is not installed
    dirty_tracking: bool  # can take pre-checkpoints (the kernel tracks dirty memory)
    runtimes: list[RuntimeInfo]  # the installed runc and crun
    criu_configs: list[CriuConfig]  # the CRIU config files present

    @property
    def criu_installed(self) -> bool:
        return bool(self.criu_version)


def criu_configs(paths: tuple[str, ...] = CRIU_CONFIGS) -> list[CriuConfig]:
    """The CRIU config files present, with their text (undecodable bytes replaced)."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_file():
            try:
                found.append(CriuConfig(name, path.read_text(errors="replace")))
            except OSError:
                continue  # unreadable: CRIU cannot read it either
    return found


def host_info(settings: Settings) -> HostInfo:
    """The host's checkpoint stack. Never raises for a missing tool: it is reported as absent."""
    try:
        version, dirty = criu.version_string(), criu.dirty_tracking()
    except PreconditionError:
        version, dirty = "", False
    return HostInfo(
        root=settings.root,
        runroot=settings.runroot,
        default_runtime=settings.default_runtime,
        criu_version=version,
        dirty_tracking=dirty,
        runtimes=runtime.installed(),
        criu_configs=criu_configs(),
    )
