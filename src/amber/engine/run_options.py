"""The `run`/`create` options people use with services, read as podman reads them: -u, --hostname,
--env-file, --label, --memory, --cpus, --pids-limit, --stop-signal, --stop-timeout, --ipc, --rm."""

from __future__ import annotations

import os
import re
import signal as signals
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from amber.engine import ipc_share
from amber.engine.attachments import AttachOptions
from amber.errors import NotFoundError, UsageError

CPU_PERIOD = 100000  # podman's: --cpus N is a quota of N periods of 100 ms
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(value: str) -> int:
    """Bytes of `value` (podman's units: 512m, 1g, 1048576, 64k). Raises UsageError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", value.lower())
    if m is None:
        raise UsageError(f"invalid memory size '{value}'", hint="give a number with a unit: --memory 512m, 1g")
    size = int(float(m.group(1)) * _UNITS[m.group(2)])
    if size < 6 * 1024 * 1024:
        raise UsageError(f"memory limit {value} is too small", hint="give at least 6m, as podman asks")
    return size


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE (or KEY, an empty value) labels. Raises UsageError for an empty key."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label '{item}'", hint="give KEY=VALUE: --label app=web")
        out[key] = value
    return out


def read_env_file(path: Path) -> list[str]:
    """KEY=VALUE lines of an --env-file (# comments and blank lines skipped; a bare KEY takes our
    environment's value, as podman does). Raises NotFoundError, UsageError."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise NotFoundError(f"env file {path} does not exist", hint="give an existing file") from exc
    except OSError as exc:
        raise UsageError(f"cannot read env file {path}: {exc.strerror}") from exc
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            out.append(line)
        elif line in os.environ:
            out.append(f"{line}={os.environ[line]}")
    return out


def signal_name(value: str) -> str:
    """TERM for SIGTERM, term, 15. Raises UsageError for an unknown signal."""
    name = value.upper().removeprefix("SIG")
    if name.isdigit():
        try:
            return signals.Signals(int(name)).name.removeprefix("SIG")
        except ValueError:
            pass
    elif hasattr(signals, f"SIG{name}"):
        return name
    raise UsageError(f"unknown signal '{value}'", hint="use a name like TERM, KILL, HUP or a number")


def signal_number(name: str) -> int:
    """15 for TERM (what podman's config.dump records); 0 for a name this host lacks."""
    try:
        return int(signals.Signals[f"SIG{name.upper().removeprefix('SIG')}"])
    except KeyError:
        return 0


@dataclass(frozen=True)
class RunOptions:
    """Options of `run` and `create` beyond image, command, name, runtime, env and workdir."""

    user: str | None = None
    hostname: str | None = None
    env_files: Sequence[Path] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids_limit: int | None = None
    stop_signal: str = "TERM"
    stop_timeout: float = 10.0
    ipc: str = "private"
    auto_remove: bool = False

    def validate(self) -> None:
        """Raises UsageError for values podman refuses."""
        if self.cpus is not None and self.cpus <= 0:
            raise UsageError(f"--cpus {self.cpus} must be more than 0")
        if self.pids_limit is not None and self.pids_limit == 0:
            raise UsageError("--pids-limit 0 is not a limit", hint="give a positive number, or -1 for none")
        if self.stop_timeout < 0:
            raise UsageError(f"--stop-timeout {self.stop_timeout} must not be negative")
        ipc_share.validate(self.ipc)
        if self.hostname is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", self.hostname):
            raise UsageError(f"invalid hostname '{self.hostname}'")
        signal_name(self.stop_signal)

    def stop_signal_name(self) -> str:
        return signal_name(self.stop_signal)

    def file_env(self) -> list[str]:
        return [item for path in self.env_files for item in read_env_file(path)]

    def resources(self) -> dict[str, Any]:
        """The OCI `linux.resources` limits (memory, cpu, pids) asked for."""
        out: dict[str, Any] = {}
        if self.memory is not None:
            out["memory"] = {"limit": self.memory}
        if self.cpus is not None:
            out["cpu"] = {"quota": int(self.cpus * CPU_PERIOD), "period": CPU_PERIOD}
        if self.pids_limit is not None and self.pids_limit > 0:
            out["pids"] = {"limit": self.pids_limit}
        return out


class RunKwargs(AttachOptions, total=False):
    """The API's keyword arguments of `run` and `create`: the network and mounts
    (AttachOptions), and these (the first four go to ContainerService.create as they are, the
    others into RunOptions)."""

    name: str | None
    runtime: str | None  # default: the engine's (--runtime), else the config's
    env: Sequence[str]  # KEY=VALUE
    workdir: str | None  # default: the image's
    user: str | None
    hostname: str | None
    env_files: Sequence[str | os.PathLike[str]]
    labels: Mapping[str, str] | Sequence[str]  # a mapping, or KEY=VALUE items
    memory: str | int | None  # bytes, or "512m"
    cpus: float | None
    pids_limit: int | None
    stop_signal: str
    stop_timeout: float
    ipc: str
    auto_remove: bool


def make_options(**kw: Unpack[RunKwargs]) -> RunOptions:
    """RunOptions from the API's keyword arguments. Raises UsageError for values podman refuses."""
    labels = kw.get("labels", ())
    memory = kw.get("memory")
    opts = RunOptions(
        user=kw.get("user") or None,
        hostname=kw.get("hostname") or None,
        env_files=[Path(f) for f in kw.get("env_files", ())],
        labels=dict(labels) if isinstance(labels, Mapping) else parse_labels(labels),
        memory=parse_memory(memory) if isinstance(memory, str) else memory,
        cpus=kw.get("cpus"),
        pids_limit=kw.get("pids_limit"),
        stop_signal=kw.get("stop_signal", "TERM"),
        stop_timeout=kw.get("stop_timeout", 10.0),
        ipc=kw.get("ipc", "private"),
        auto_remove=kw.get("auto_remove", False),
    )
    opts.validate()
    return opts
