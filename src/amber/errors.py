"""amber's exceptions: each carries a one-line message, a hint, and the exit code the CLI returns.

The library raises these; only the CLI turns them into `error:` / `hint:` lines and exit codes.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path


class ExitCode(enum.IntEnum):
    """amber's documented exit codes (README, "Exit codes")."""

    OK = 0
    ERROR = 1  # an operation failed (a tool failed, a restore could not complete, ...)
    USAGE = 2  # bad command line
    NOT_FOUND = 3  # no such container, image or archive
    CONFLICT = 4  # a name in use, a container in the wrong state, a lock held
    PRECONDITION = 5  # not root, tool missing or too old, feature unsupported by this host
    BAD_ARCHIVE = 6  # an archive or image that is malformed or hostile
    RUNTIME_MISMATCH = 7  # an archive that the requested runtime cannot restore
    INTERRUPTED = 130


class AmberError(Exception):
    """Base of every error amber reports to its user."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = list(details)

    def __str__(self) -> str:
        return self.message


class UsageError(AmberError):
    exit_code = ExitCode.USAGE


class NotFoundError(AmberError):
    exit_code = ExitCode.NOT_FOUND


class ConflictError(AmberError):
    exit_code = ExitCode.CONFLICT


class PreconditionError(AmberError):
    exit_code = ExitCode.PRECONDITION


class ArchiveError(AmberError):
    """An archive (checkpoint or image) that can't be read, or that tries something hostile."""

    exit_code = ExitCode.BAD_ARCHIVE


class RuntimeMismatchError(AmberError):
    exit_code = ExitCode.RUNTIME_MISMATCH


class CommandError(AmberError):
    """An external tool failed: exited non-zero, died of a signal, or timed out (`timeout` set).

    Keeps everything needed to explain it: argv, exit code (negative: the signal), output, log.
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stdout: str,
        stderr: str,
        *,
        what: str | None = None,
        hint: str | None = None,
        log_path: Path | None = None,
        timeout: float | None = None,
    ) -> None:
        tool = Path(argv[0]).name if argv else "?"
        sub = f" {argv[1]}" if len(argv) > 1 and not argv[1].startswith("-") else ""
        status = exit_status(returncode, timeout)
        message = what or f'"{tool}{sub}" {status}'
        tail = [line for line in (stderr or stdout).strip().splitlines() if line.strip()][-8:]
        details = [f"command: {' '.join(argv)}", *([status] if what else []), *tail]
        if log_path is not None:
            details.append(f"log: {log_path}")
        super().__init__(message, hint, details)
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.log_path = log_path
        self.timeout = timeout


def exit_status(returncode: int, timeout: float | None = None) -> str:
    """How a process ended, in words: "failed with exit code 3", "was killed by SIGKILL", "timed
    out after 5 s" (when `timeout` is given, the process was stopped for running too long)."""
    if timeout is not None:
        return f"timed out after {timeout:g} s"
    if returncode < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"failed with exit code {returncode}"


def require_root(action: str) -> None:
    """Raise a PreconditionError unless we run as root."""
    import os

    if os.geteuid() != 0:
        raise PreconditionError(
            f"{action} needs root (CRIU, namespaces and overlay mounts are root-only)",
            hint="run amber as root, e.g. with sudo",
        )


def amended(exc: AmberError, *, hint: str | None = None, details: Sequence[str] = ()) -> AmberError:
    """A new error saying what `exc` says, with more context: `hint` (when given) replaces its
    hint, `details` follow its own. Same exit code. Raise it `from exc`: a raised error is never
    changed afterwards."""
    cls = type(exc) if type(exc).__init__ is AmberError.__init__ else AmberError
    new = cls(exc.message, hint if hint is not None else exc.hint, [*exc.details, *details])
    new.exit_code = exc.exit_code
    return new
