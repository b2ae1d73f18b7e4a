"""What a binary said about itself (runc/crun/CRIU `--version`, a feature probe), kept across
commands in amber's run root, so that each command does not ask again.

An answer is stored per binary and question, with the binary's identity: its canonical path,
device, inode, size, modification and change times, and the boot (a kernel feature probe
depends on the running kernel). A binary replaced, upgraded or touched is asked again. Only the
real runner's answers are kept (a fake runner is asked each time), and only in a directory that
is amber's alone: owned by this user, mode 0700, not a symlink; a file there that someone else
could have written (another owner, group or world write bits, not a regular file) is ignored
and replaced. Anything that goes wrong reading or writing the cache just asks the binary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amber.adapters import run as runner

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MAX_ENTRIES = 256
_dir: Path | None = None
_boot: str | None = None


def configure(directory: Path | None) -> None:
    """Keep answers in `directory` (made 0700 on first write), or nowhere (None)."""
    global _dir
    _dir = directory


def directory() -> Path | None:
    return _dir


def _boot_id() -> str:
    global _boot
    if _boot is None:
        try:
            _boot = _BOOT_ID.read_text().strip()
        except OSError:
            _boot = ""
    return _boot


def identity(binary: str) -> list[Any] | None:
    """What must not change for an answer about `binary` to stay true (None: it cannot be read)."""
    real = os.path.realpath(binary)
    try:
        st = os.stat(real)
    except OSError:
        return None
    return [real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, _boot_id()]


def _private(st: os.stat_result, kind: Callable[[int], bool]) -> bool:
    return kind(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _entry(question: str, key: list[Any]) -> Path | None:
    if _dir is None:
        return None
    digest = hashlib.sha256(json.dumps([question, key[0]]).encode()).hexdigest()[:32]
    return _dir / f"{digest}.json"


def _read(path: Path, question: str, key: list[Any]) -> tuple[bool, Any]:
    """(found, answer) from the cache file at `path`, trusted only when private."""
    try:
        if not _private(os.lstat(path.parent), stat.S_ISDIR):
            return False, None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False, None
    with os.fdopen(fd, "rb") as f:
        if not _private(os.fstat(fd), stat.S_ISREG):
            return False, None
        try:
            data = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            return False, None
    if not isinstance(data, dict) or data.get("question") != question or data.get("key") != key:
        return False, None
    return True, data.get("answer")


def _write(path: Path, question: str, key: list[Any], answer: Any) -> None:
    from amber.adapters.state import atomic_write_json, make_private_dir
    from amber.errors import AmberError

    with contextlib.suppress(OSError, AmberError, TypeError, ValueError):
        make_private_dir(path.parent)
        atomic_write_json(path, {"question": question, "key": key, "answer": answer}, mode=0o600)
        _trim(path.parent)


def _trim(directory: Path) -> None:
    """Keep at most MAX_ENTRIES answers (one per archive CPU could grow without end): the
    oldest go first."""
    entries = [e for e in os.scandir(directory) if e.name.endswith(".json")]
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    for entry in entries[: len(entries) - MAX_ENTRIES]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def ask(binary: str, question: str, compute: Callable[[], Any]) -> Any:
    """`compute()`'s answer (JSON-able) to `question` about `binary`, from the cache when the
    binary is unchanged since it was stored; stored after asking otherwise (None, "no answer",
    is never stored). With a fake runner installed, or no cache directory, `compute()` is
    simply called."""
    if runner.current() is not runner.SYSTEM:
        return compute()
    key = identity(binary)
    path = None if key is None else _entry(question, key)
    if key is None or path is None:
        return compute()
    found, answer = _read(path, question, key)
    if found:
        return answer
    answer = compute()
    if answer is not None and identity(binary) == key:  # not replaced while it was asked
        _write(path, question, key, answer)
    return answer


__all__ = ["MAX_ENTRIES", "ask", "configure", "directory", "identity"]
