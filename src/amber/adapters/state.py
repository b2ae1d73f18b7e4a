"""On-disk state primitives: atomic JSON writes and per-object locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from amber.errors import ConflictError, PreconditionError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def unusable(path: Path, exc: OSError) -> PreconditionError:
    """The error for a state directory amber cannot use (read-only, a file, no permission)."""
    return PreconditionError(
        f"cannot use {path} for amber's state: {exc.strerror or exc}",
        hint="give a writable directory of root's with --root/--runroot (or AMBER_ROOT/AMBER_RUNROOT), "
        "and run amber as root",
    )


def list_dir(path: Path) -> list[Path]:
    """The entries of the state directory `path`, sorted; none when it does not exist. Raises
    PreconditionError when it is a file or cannot be read (not root)."""
    try:
        return sorted(path.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise unusable(path, exc) from exc


def make_private_dir(path: Path) -> None:
    """Make `path` a directory (with its missing parents), mode 0700 whatever the umask: the
    directories this creates, and `path` itself, which must be a real directory, not a symlink.

    Raises PreconditionError when it cannot (read-only file system, a file in the way, no
    permission, a symlink planted at `path`).
    """
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, PRIVATE_DIR)
            os.chmod(d, PRIVATE_DIR, follow_symlinks=False)
        st = os.lstat(path)
    except OSError as exc:
        raise unusable(path, exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise unusable(path, NotADirectoryError(errno.ENOTDIR, "not a directory (or a symlink)"))
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR and not missing:
        try:
            os.chmod(path, PRIVATE_DIR, follow_symlinks=False)
        except OSError as exc:
            raise unusable(path, exc) from exc


def remove_tree(path: Path) -> None:
    """Remove `path` and everything below it, at any depth (iteratively: no recursion limit),
    never following a symlink (one is removed, not its target). A missing `path` is fine.

    Raises OSError for what cannot be removed.
    """
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
    except FileNotFoundError:
        return
    stack = [os.fspath(path)]
    while stack:
        top = stack[-1]
        subdirs = []
        with os.scandir(top) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)  # emptied first; `top` is looked at again after them
        else:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(top)
            stack.pop()


def create_private(path: Path) -> BinaryIO:
    """A new file at `path`, opened for writing: created exclusively (an existing file or a
    planted symlink is refused, never followed), mode 0600 whatever the umask.

    Raises OSError (FileExistsError when something is there already).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that readers see the old content or the new, never a mix. The
    temporary file is made exclusively (mkstemp), the result has `mode`; a missing parent is made
    0700. Raises OSError, or PreconditionError for a parent that cannot be made."""
    if not path.parent.is_dir():
        make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# How long a command waits for an object's lock that another amber command holds (README,
# "Concurrency") before it gives up and says which command is busy with it; $AMBER_LOCK_WAIT
# (seconds) changes it.
LOCK_WAIT = 30.0
LOCK_WAIT_ENV = "AMBER_LOCK_WAIT"


def lock_wait() -> float:
    """The seconds a command waits for a held lock: $AMBER_LOCK_WAIT, else LOCK_WAIT."""
    try:
        value = float(os.environ.get(LOCK_WAIT_ENV, LOCK_WAIT))
    except ValueError:
        return LOCK_WAIT
    return value if value >= 0 else LOCK_WAIT


_POLL = 0.05


def holder_description() -> str:
    """What this process is, for a command that finds the lock held: pid and command line."""
    argv = [Path(sys.argv[0]).name if sys.argv else "amber", *sys.argv[1:]]
    if argv[0] in ("__main__.py", "-m", "-c"):
        argv[0] = "amber"
    return f"pid {os.getpid()}: {shlex.join(argv)}"


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0).decode(errors="replace").strip()
    return ""


@contextlib.contextmanager
def locked(lock_dir: Path, key: str, what: str, *, wait: bool | float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on lock_dir/key, waiting for it: `wait` seconds (None: lock_wait()),
    for ever (True), or not at all (False). Raises ConflictError ("busy", naming the
    holder's command, which each holder writes into the lock file) when it is still held.

    flock locks die with their process, so a killed amber never leaves a stale lock behind.
    """
    make_private_dir(lock_dir)
    fd = os.open(lock_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        _acquire(fd, what, lock_wait() if wait is None else wait)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (holder_description() + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)


def _acquire(fd: int, what: str, wait: bool | float) -> None:
    if wait is True:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + (0.0 if wait is False else float(wait))
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                waited = "" if wait is False else f" (waited {float(wait):g} s)"
                raise ConflictError(
                    f"{what} is busy: another amber command is working on it{waited}"
                    + (f" ({holder})" if holder else ""),
                    hint="wait for that command to finish, then try again",
                ) from exc
        time.sleep(_POLL)
