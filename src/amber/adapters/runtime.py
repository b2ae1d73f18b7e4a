"""The OCI runtimes (runc, crun): finding them, and their state/kill/delete/exec/checkpoint verbs.

Both share one CLI surface; `Runtime` drives either. Container creation and restore go through
conmon (adapters/conmon.py), which calls the runtime itself. Finding a runtime and asking its
`--version` go through the current runner (adapters/run.py), so tests can fake both.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters import probe_cache
from amber.adapters import run as runner
from amber.adapters.run import ACTION_TIMEOUT, QUERY_TIMEOUT, Result, run, run_streaming
from amber.errors import CommandError, PreconditionError
from amber.layout import criu_transfer_config

if TYPE_CHECKING:
    from amber.adapters.criu_transfer import PageEndpoint

KNOWN_RUNTIMES = ("crun", "runc")
# How long a dump may take (CRIU writing a container's memory) before amber stops it and thaws it.
DUMP_TIMEOUT = 600.0


@dataclass(frozen=True)
class RuntimeInfo:
    """An installed runtime. `kind` is what it is (from its --version), `path` where it is."""

    kind: str  # "crun", "runc", or the binary's own name for others
    path: str  # canonical absolute path (symlinks resolved)
    version: str
    criu: bool  # can it checkpoint?


def _version(path: str) -> tuple[str, str, bool]:
    out = run([path, "--version"], check=False, timeout=QUERY_TIMEOUT).stdout
    first = out.strip().splitlines()[0] if out.strip() else ""
    words = first.split()
    kind = words[0] if words else Path(path).name
    version = words[2] if len(words) >= 3 and words[1] == "version" else "unknown"
    criu = "+CRIU" in out if kind == "crun" else kind == "runc"
    return kind, version, criu


def _answer(real: str) -> tuple[str, str, bool]:
    answer = probe_cache.ask(real, "--version", lambda: list(_version(real)))
    if isinstance(answer, list) and len(answer) == 3:
        kind, version, criu = answer
        if isinstance(kind, str) and isinstance(version, str) and isinstance(criu, bool):
            return kind, version, criu
    return _version(real)


# What each binary's --version said, by canonical path (the real runner's answers only: a fake
# runner is asked each time).
_cache: dict[str, RuntimeInfo] = {}


def describe(path: str) -> RuntimeInfo:
    """What the runtime binary at `path` is, from its `--version` (asked once per binary, and
    kept across commands while the binary is unchanged: probe_cache)."""
    real = os.path.realpath(path)
    cached = runner.current() is runner.SYSTEM
    if not cached or real not in _cache:
        kind, version, criu = _answer(real)
        info = RuntimeInfo(kind=kind, path=real, version=version, criu=criu)
        if not cached:
            return info
        _cache[real] = info
    return _cache[real]


def locate(spec: str) -> str | None:
    """Absolute path of a runtime named `spec` (a name on the search path, or a path), or None."""
    return runner.which(spec)


def installed() -> list[RuntimeInfo]:
    """The known runtimes (runc, crun) found on this host."""
    found = []
    for name in KNOWN_RUNTIMES:
        path = locate(name)
        if path is not None:
            found.append(describe(path))
    return found


def resolve(spec: str) -> RuntimeInfo:
    """The runtime the user means by `spec` (runc, crun, /usr/bin/crun, a symlink...).

    Raises PreconditionError, listing the installed runtimes, when there is no such runtime.
    """
    path = locate(spec)
    if path is None:
        names = ", ".join(f"{r.kind} ({r.path})" for r in installed()) or "none"
        raise PreconditionError(
            f"OCI runtime '{spec}' is not installed on this host (installed: {names})",
            hint="give one of the installed runtimes with --runtime, or install it (make setup)",
        )
    return describe(path)


@dataclass(frozen=True)
class Runtime:
    """One runtime binary with amber's own state root (so tests and hosts never collide)."""

    info: RuntimeInfo
    state_root: Path

    def global_args(self) -> list[str]:
        return ["--root", str(self.state_root)]

    def _argv(self, *args: str) -> list[str]:
        return [self.info.path, *self.global_args(), *args]

    def state(self, cid: str) -> dict[str, object] | None:
        """The runtime's view of the container, or None if it does not know it."""
        res = run(self._argv("state", cid), check=False, timeout=QUERY_TIMEOUT)
        if res.returncode != 0:
            return None
        try:
            data = json.loads(res.stdout)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def start(self, cid: str, name: str) -> None:
        """Start a created container. Raises CommandError when the runtime fails."""
        run(self._argv("start", cid), timeout=ACTION_TIMEOUT, what=f"{self.info.kind} could not start container {name}")

    def kill(self, cid: str, signal: str = "TERM", *, all_processes: bool = False) -> Result:
        args = ["kill", *(["--all"] if all_processes else []), cid, signal]
        return run(self._argv(*args), check=False, timeout=ACTION_TIMEOUT)

    def pause(self, cid: str, name: str) -> None:
        """Freeze every process of the container (the cgroup freezer). Raises CommandError."""
        run(self._argv("pause", cid), timeout=ACTION_TIMEOUT, what=f"{self.info.kind} could not pause container {name}")

    def resume(self, cid: str) -> Result:
        """Thaw a frozen container (also one a killed dump left frozen); never raises for a
        failing runtime: the Result says how it went."""
        return run(self._argv("resume", cid), check=False, timeout=ACTION_TIMEOUT)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Forget the container. A half-created one (a failed restore) is forgotten too.

        Raises CommandError when the runtime refuses and still knows the container.
        """
        res = run(self._argv("delete", *(["--force"] if force else []), cid), check=False, timeout=ACTION_TIMEOUT)
        if res.returncode == 0:
            return
        if self.state(cid) is not None:
            raise CommandError(
                res.argv,
                res.returncode,
                res.stdout,
                res.stderr,
                what=f"{self.info.kind} could not delete container {cid}",
                hint=f"see what {self.info.kind} says above; amber rm -f kills the container first",
            )
        leftover = self.state_root / cid
        if force and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)  # state of a container that never ran

    def exec(
        self, cid: str, argv: Sequence[str], *, env: Sequence[str] = (), cwd: str | None = None, tty: bool = False
    ) -> int:
        args = ["exec", *(["--tty"] if tty else [])]
        for e in env:
            args += ["--env", e]
        if cwd:
            args += ["--cwd", cwd]
        return run_streaming(self._argv(*args, cid, *argv))

    def checkpoint(
        self,
        cid: str,
        *,
        image_path: Path,
        work_path: Path,
        leave_running: bool = False,
        tcp_established: bool = False,
        file_locks: bool = False,
        pre_dump: bool = False,
        parent_path: str | None = None,
        page_server: PageEndpoint | None = None,
        lazy: bool = False,
        status_fd: int | None = None,
        timeout: float = DUMP_TIMEOUT,
    ) -> Result:
        """The runtime's checkpoint (CRIU's dump); with `page_server`, the pages go to the CRIU
        page server there instead of the images directory; with `lazy` too, CRIU serves them from
        here on `page_server`'s port after the dump (it returns once they are all served; runc
        writes a byte on `status_fd` when it listens). A failing dump is a Result; raises
        CommandError when it times out."""
        work_path.mkdir(parents=True, exist_ok=True)  # crun fails if it does not exist
        extra, env = (
            self.page_server_options(work_path, page_server, lazy=lazy, status_fd=status_fd)
            if page_server
            else ([], {})
        )
        fds = (status_fd,) if lazy and status_fd is not None and self.info.kind == "runc" else ()
        args = [
            "checkpoint",
            "--image-path",
            str(image_path),
            "--work-path",
            str(work_path),
            *(["--leave-running"] if leave_running else []),
            *(["--tcp-established"] if tcp_established else []),
            *(["--file-locks"] if file_locks else []),
            *(["--pre-dump"] if pre_dump else []),
            *(["--parent-path", parent_path] if parent_path else []),
            *extra,
            cid,
        ]
        return run(self._argv(*args), check=False, timeout=timeout, env=env, pass_fds=fds)

    def page_server_options(
        self, work_path: Path, endpoint: PageEndpoint, *, lazy: bool = False, status_fd: int | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """(checkpoint flags, environment) that send a dump's pages to `endpoint` (lazy: serve
        them from here on demand). runc has flags; crun 1.21 reads a CRIU configuration file
        written into `work_path` (CRIU_CONFIG_FILE), never /etc/criu."""
        from amber.adapters.criu_transfer import criu_config_text, runc_checkpoint_args  # migration only

        if self.info.kind == "runc":
            return runc_checkpoint_args(endpoint, lazy=lazy, status_fd=status_fd), {}
        config = criu_transfer_config(work_path, lazy=lazy)
        config.write_text(criu_config_text(endpoint, lazy=lazy))
        return [], {"CRIU_CONFIG_FILE": str(config)}


def require(info: RuntimeInfo, action: str) -> None:
    """Raises PreconditionError unless the runtime can checkpoint and restore (built with CRIU)."""
    if not info.criu:
        raise PreconditionError(
            f"runtime {info.kind} ({info.path}) cannot {action}: it is built without CRIU support",
            hint="install a runtime with checkpoint support (crun with +CRIU, or runc): make setup",
        )
