"""Settings: where amber keeps its state, which runtime it uses by default.

Precedence: command-line option > environment (AMBER_ROOT, AMBER_RUNROOT, AMBER_CONFIG) >
config file (TOML, default /etc/amber/amber.toml) > built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from amber.errors import UsageError

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


@dataclass(frozen=True)
class Layout:
    """Every path amber uses, derived from the two roots."""

    root: Path
    runroot: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.runroot / "locks"

    @property
    def exits(self) -> Path:
        return self.runroot / "exits"

    @property
    def netns(self) -> Path:
        return self.runroot / "netns"

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def bundle(self, cid: str) -> Path:
        """The OCI bundle: config.json, ctr.log, checkpoint/ (podman calls it userdata)."""
        return self.containers / cid / "userdata"

    def ensure(self) -> None:
        for d in (self.images, self.layers, self.containers, self.tmp, self.locks, self.exits, self.netns):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
