"""Settings: where amber keeps its state, which runtime it uses by default (paths: amber.layout).

Precedence: command-line option > environment (AMBER_ROOT, AMBER_RUNROOT, AMBER_CONFIG) >
config file (TOML, default /etc/amber/amber.toml) > built-in defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from amber.errors import UsageError
from amber.layout import Layout  # the on-disk layout lives in amber.layout

DEFAULT_ROOT = Path("/var/lib/amber")
DEFAULT_RUNROOT = Path("/run/amber")
DEFAULT_CONFIG = Path("/etc/amber/amber.toml")
DEFAULT_RUNTIME = "crun"
# The most an archive may expand to when restored ([engine] max_unpacked_size, README "Limits"):
# the checkpoint images, the rootfs diff and every other member together.
DEFAULT_MAX_UNPACKED = 32 << 30
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: object, where: str) -> int:
    """A size in bytes from an integer or a string such as "512M", "32G" (K, M, G, T: powers of
    1024, an optional trailing "iB" or "B"). Raises UsageError naming `where` for anything else."""
    text = str(value).strip().lower().removesuffix("ib").removesuffix("b") if not isinstance(value, int) else ""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            unit = text[-1:] if text[-1:] in _UNITS and text[-1:] else ""
            number = int(float(text[: len(text) - len(unit)]) * _UNITS[unit])
    except (ValueError, OverflowError):
        number = -1
    if number <= 0:
        raise UsageError(f"{where}: {value!r} is not a size", hint='give bytes, or a size such as "512M" or "32G"')
    return number


@dataclass(frozen=True)
class Settings:
    root: Path
    runroot: Path
    default_runtime: str
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED
    compress_level: int | None = None  # [engine] compress_level: an export's default level (None: built in)

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
            import tomllib  # only when there is a config file to read

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
            max_unpacked_size=parse_size(
                engine.get("max_unpacked_size", DEFAULT_MAX_UNPACKED), f"config file {path}: max_unpacked_size"
            ),
            compress_level=_level(engine.get("compress_level"), f"config file {path}: compress_level"),
        )


def _level(value: object, where: str) -> int | None:
    """A compression level from the config (checked against the compression at checkpoint).
    Raises UsageError naming `where` for a value that is not a positive integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: {value!r} is not a compression level", hint="give an integer: zstd 1-19, gzip 1-9")
    return value


__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_MAX_UNPACKED",
    "parse_size",
    "DEFAULT_ROOT",
    "DEFAULT_RUNTIME",
    "DEFAULT_RUNROOT",
    "Layout",
    "Settings",
]
