"""The one place amber runs external programs: argv lists, never a shell, logged, output kept.

Every adapter calls `run()` (or `spawn()` for a process that must outlive the call); no other
module imports `subprocess`.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from amber.errors import CommandError, PreconditionError

log = logging.getLogger("amber.run")

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
    }
    for key in ("XDG_RUNTIME_DIR", "TMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra or {})
    return env


def _not_installed(tool: str) -> PreconditionError:
    return PreconditionError(
        f"could not run '{tool}': not installed", hint="run the host setup: make setup (scripts/setup-host.sh)"
    )


def find_tool(name: str, reason: str) -> str:
    """Absolute path of `name`, or a PreconditionError saying what it is needed for."""
    found = shutil.which(name, path=_env(None)["PATH"] + ":/usr/sbin:/sbin")
    if found is None:
        raise PreconditionError(
            f"could not find '{name}', which is required to {reason}",
            hint="run the host setup: make setup (scripts/setup-host.sh)",
        )
    return found


def run(
    argv: Sequence[PathArg],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: PathArg | None = None,
    timeout: float | None = None,
    what: str | None = None,
    hint: str | None = None,
    log_path: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> Result:
    """Run argv to completion, capturing its output. Raises CommandError on failure when `check`."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, no shell
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=_env(env),
            cwd=cwd,
            timeout=timeout,
            pass_fds=tuple(pass_fds),
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise CommandError(
            args, -1, out, err, what=what or f'"{args[0]}" timed out after {timeout} s', hint=hint, log_path=log_path
        ) from exc
    result = Result(args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    if result.returncode != 0:
        log.debug("exit %d: %s", result.returncode, result.stderr.strip()[-2000:])
    if check and result.returncode != 0:
        raise CommandError(
            args, result.returncode, result.stdout, result.stderr, what=what, hint=hint, log_path=log_path
        )
    return result


def spawn(
    argv: Sequence[PathArg],
    *,
    env: Mapping[str, str] | None = None,
    cwd: PathArg | None = None,
    pass_fds: Sequence[int] = (),
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start argv without waiting (for monitors that daemonize, such as conmon)."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s &", shlex.join(args))
    try:
        return subprocess.Popen(  # noqa: S603 - argv list, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=_env(env),
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc


def run_streaming(argv: Sequence[PathArg], *, env: Mapping[str, str] | None = None) -> int:
    """Run argv with our own stdio (for `amber exec`); returns its exit code."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        return subprocess.call(args, env=_env(env))  # noqa: S603 - argv list, no shell
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc
