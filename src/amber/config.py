"""Settings: where amber keeps its state, which runtime it uses by default (paths: amber.layout).

Precedence: command-line option > environment (AMBER_ROOT, AMBER_RUNROOT, AMBER_CONFIG) >
config file (TOML, default /etc/amber/amber.toml) > built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from amber.errors import UsageError
from amber.layout import Layout  # the on-disk layout lives in amber.layout

DEFAULT_ROOT = Path("/var/lib/amber")
DEFAULT_RUNROOT = Path("/run/amber")
DEFAULT_CONFIG = Path("/etc/amber/amber.toml")
DEFAULT_RUNTIME = "crun"


@dataclass(frozen=True)
class Settings:
    root: Path
    runroot: Path
    default_runtime: str

    @classmethod
    def load(
        cls,
        *,
        root: str | None = None,
        runroot: str | None = None,
        config_file: str | None = None,
    ) -> Settings:
        path = Path(config_file or os.environ.get("AMBER_CONFIG") or DEFAULT_CONFIG)
        data: dict[str, object] = {}
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(f"config file {path} is not valid TOML: {exc}", hint=f"fix or remove {path}") from exc
        engine = data.get("engine", {})
        if not isinstance(engine, dict):
            raise UsageError(f"config file {path}: [engine] must be a table")

        def pick(cli: str | None, env: str, key: str, default: Path) -> Path:
            value = cli or os.environ.get(env) or engine.get(key)
            return Path(str(value)) if value else default

        runtime = engine.get("runtime", DEFAULT_RUNTIME)
        return cls(
            root=pick(root, "AMBER_ROOT", "root", DEFAULT_ROOT),
            runroot=pick(runroot, "AMBER_RUNROOT", "runroot", DEFAULT_RUNROOT),
            default_runtime=str(runtime),
        )


__all__ = ["DEFAULT_CONFIG", "DEFAULT_ROOT", "DEFAULT_RUNTIME", "DEFAULT_RUNROOT", "Layout", "Settings"]
