"""The one place amber runs external programs: argv lists, never a shell, logged, output kept.

Every adapter calls `run()` (or `spawn()` for a process that must outlive the call, `which()` to
find a tool); no other module imports `subprocess`. Those functions go through the current
`Runner`: the real one (`SystemRunner`) unless a caller installed another with `using()` (the
Engine does, for `Engine(runner=...)`), so tests can replace the tools without root.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import selectors
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from amber.errors import CommandError, PreconditionError

log = logging.getLogger("amber.run")

PathArg = str | os.PathLike[str]
SEARCH_PATH = ":/usr/sbin:/sbin:/usr/bin:/usr/local/bin"  # appended to $PATH when looking for tools

# Timeouts for the calls that have no better-known bound: a query (--version, state, check), and
# an action on the host (mount, umount, kill, delete). Long work (a dump, a copy) sets its own.
QUERY_TIMEOUT = 30.0
ACTION_TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """What amber needs from the system to run tools. `SystemRunner` is the real one."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str],
        cwd: PathArg | None = None,
        timeout: float | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Result:
        """Run argv to completion and capture its output. Raises FileNotFoundError if argv[0] is
        missing and subprocess.TimeoutExpired after `timeout` seconds; a failing exit is a Result."""
        ...

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: PathArg | None = None,
        pass_fds: Sequence[int] = (),
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start argv in a new session without waiting. Raises FileNotFoundError if it is missing."""
        ...

    def call(self, argv: Sequence[str], *, env: Mapping[str, str]) -> int:
        """Run argv with our own stdio; its exit code. Raises FileNotFoundError if it is missing."""
        ...

    def which(self, name: str) -> str | None:
        """Absolute path of the executable `name` (a name on the search path, or a path), or None."""
        ...


# How long output is still read after the program itself has exited: a process it left behind
# (a CRIU helper stopped under ptrace, a daemon) may hold its pipes open for ever.
PIPE_GRACE = 5.0
LEFT_HOLDING = "\n[amber: the program exited, but a process it left behind still holds its output]\n"


def _capture(proc: subprocess.Popen[bytes], input: bytes | None, timeout: float | None) -> tuple[bytes, bytes]:
    """Feed `input` to proc and read its stdout and stderr until both end, or until PIPE_GRACE
    after proc itself exits (what a leftover process still holds is cut, and said so in stderr).
    Raises subprocess.TimeoutExpired (proc killed) when proc runs longer than `timeout`."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    feeder = None
    if input is not None and proc.stdin is not None:
        feeder = threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True)
        feeder.start()
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        exited_at: float | None = None
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > PIPE_GRACE:
                chunks[proc.stderr.fileno()].append(LEFT_HOLDING.encode())
                break
            if exited_at is None and deadline is not None and now > deadline:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(proc.args, timeout or 0.0, b"".join(chunks[proc.stdout.fileno()]))
            for key, _ in sel.select(timeout=0.2):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        proc.wait(remaining)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    if feeder is not None:
        feeder.join(PIPE_GRACE)
    return b"".join(chunks[proc.stdout.fileno()]), b"".join(chunks[proc.stderr.fileno()])


def _feed(pipe: IO[bytes], data: bytes) -> None:
    """Write `data` to a child's stdin and close it (a child that stops reading ends the write)."""
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
    with contextlib.suppress(OSError):
        pipe.close()


class SystemRunner:
    """The real runner: subprocess, and the executables of this host."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str],
        cwd: PathArg | None = None,
        timeout: float | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Result:
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            list(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            pass_fds=tuple(pass_fds),
        )
        with proc:
            out, err = _capture(proc, input, timeout)
        return Result(list(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: PathArg | None = None,
        pass_fds: Sequence[int] = (),
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - argv list, no shell
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env),
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )

    def call(self, argv: Sequence[str], *, env: Mapping[str, str]) -> int:
        return subprocess.call(list(argv), env=dict(env))  # noqa: S603 - argv list, no shell

    def which(self, name: str) -> str | None:
        if "/" in name:
            return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
        return shutil.which(name, path=os.environ.get("PATH", "") + SEARCH_PATH)


SYSTEM = SystemRunner()
_current: contextvars.ContextVar[Runner] = contextvars.ContextVar("amber_runner", default=SYSTEM)


def current() -> Runner:
    """The runner `run`, `spawn`, `which` use here: SYSTEM unless `using()` installed another."""
    return _current.get()


@contextlib.contextmanager
def using(runner: Runner) -> Iterator[Runner]:
    """Make `runner` the one the adapters use, in this context (thread, task) only."""
    token = _current.set(runner)
    try:
        yield runner
    finally:
        _current.reset(token)


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


def which(name: str) -> str | None:
    """Absolute path of the executable `name` (on $PATH, /usr/sbin, /sbin..., or a path), or None."""
    return current().which(name)


def find_tool(name: str, reason: str) -> str:
    """Absolute path of `name`, or a PreconditionError saying what it is needed for."""
    found = which(name)
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
    timeout: float,
    what: str | None = None,
    hint: str | None = None,
    log_path: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> Result:
    """Run argv to completion, capturing its output; stop it after `timeout` seconds.

    Every call site gives its own `timeout` (never None: a tool that hangs must not hang amber;
    see the *_TIMEOUT constants here and in the adapters). Raises PreconditionError when the tool
    is not installed, and CommandError naming the tool when it times out or (with `check`) fails:
    exits non-zero or dies of a signal.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        result = current().run(args, input=input, env=_env(env), cwd=cwd, timeout=timeout, pass_fds=pass_fds)
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        tool = os.path.basename(args[0])
        hint = hint or f"{tool} did not finish in {timeout:g} s: check that it works on this host, then try again"
        raise CommandError(args, -1, out, err, what=what, hint=hint, log_path=log_path, timeout=timeout) from exc
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
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start argv without waiting (for monitors that daemonize, such as conmon; or a control
    channel such as amber migrate's ssh, with stdin and stdout PIPE: the caller bounds every wait).

    Raises PreconditionError when the tool is not installed.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s &", shlex.join(args))
    try:
        return current().spawn(
            args, env=_env(env), cwd=cwd, pass_fds=pass_fds, stdout=stdout, stderr=stderr, stdin=stdin
        )
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc


def run_streaming(argv: Sequence[PathArg], *, env: Mapping[str, str] | None = None) -> int:
    """Run argv with our own stdio (for `amber exec`); returns its exit code.

    Raises PreconditionError when the tool is not installed.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        return current().call(args, env=_env(env))
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc
