"""CRIU: version and feature probes, its logs and its statistics images.

The probes run CRIU through the current runner (adapters/run.py): the real one's answers are
kept for the life of the process, a fake runner is asked each time.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from amber.adapters import criu_pb, probe_cache
from amber.adapters import run as runner
from amber.adapters.podman_format import CPUINFO_IMG
from amber.adapters.run import QUERY_TIMEOUT, find_tool, run

MIN_VERSION = (4, 2)

# CRIU statistics fields podman reports (--print-stats), in podman's order.
DUMP_FIELDS = ("freezing_time", "frozen_time", "memdump_time", "memwrite_time", "pages_scanned", "pages_written")
RESTORE_FIELDS = ("forking_time", "restore_time", "pages_restored", "pages_compared", "pages_skipped_cow")


def version() -> tuple[int, ...]:
    """CRIU's version, e.g. (4, 2, 1); () when it does not say. PreconditionError if missing."""
    return _system_version() if runner.current() is runner.SYSTEM else _version()


@functools.cache
def _system_version() -> tuple[int, ...]:
    answer = probe_cache.ask(_criu(), "--version", lambda: list(_version()))
    if isinstance(answer, list) and all(isinstance(x, int) for x in answer):
        return tuple(answer)
    return _version()


def _criu() -> str:
    return find_tool("criu", "checkpoint containers")


def _version() -> tuple[int, ...]:
    out = run([_criu(), "--version"], check=False, timeout=QUERY_TIMEOUT).stdout
    for line in out.splitlines():
        if line.startswith("Version:") and len(line.split()) > 1:
            return tuple(int(x) for x in line.split()[1].split(".") if x.isdigit())
    return ()


def version_string() -> str:
    """CRIU's version as text, "unknown" when it does not say. PreconditionError if missing."""
    return ".".join(str(x) for x in version()) or "unknown"


def dirty_tracking() -> bool:
    """Can this kernel track dirty memory (needed for pre-checkpoints)? PreconditionError if CRIU
    is missing."""
    return _system_dirty_tracking() if runner.current() is runner.SYSTEM else _dirty_tracking()


@functools.cache
def _system_dirty_tracking() -> bool:
    answer = probe_cache.ask(_criu(), "check --feature mem_dirty_track", _dirty_tracking)
    return answer if isinstance(answer, bool) else _dirty_tracking()


def _dirty_tracking() -> bool:
    return run([_criu(), "check", "--feature", "mem_dirty_track"], check=False, timeout=QUERY_TIMEOUT).returncode == 0


def record_cpuinfo(images: Path) -> bool:
    """Write cpuinfo.img (this CPU's features) beside a dump, so a restoring host can compare.

    What `criu cpuinfo dump` writes depends only on the CPU, the kernel and CRIU: it is asked
    once per CRIU binary and boot (probe_cache), then written from the cache."""
    target = images / CPUINFO_IMG

    def dump() -> str | None:
        res = run([_criu(), "cpuinfo", "dump", "-D", str(images)], check=False, timeout=QUERY_TIMEOUT)
        try:
            return target.read_bytes().hex() if res.returncode == 0 else None
        except OSError:
            return None

    answer = probe_cache.ask(_criu(), "cpuinfo dump", dump)
    if not isinstance(answer, str):
        return False
    if not target.is_file():  # from the cache: write what CRIU wrote
        try:
            target.write_bytes(bytes.fromhex(answer))
        except (OSError, ValueError):
            return dump() is not None
    return True


def check_cpuinfo(images: Path) -> tuple[int, str]:
    """`criu cpuinfo check` of the cpuinfo.img in `images`: (its exit status, its output).

    A pass or a refusal (0 or 1) is kept per CRIU binary, boot and cpuinfo.img (probe_cache).
    Raises OSError when cpuinfo.img cannot be read, PreconditionError when CRIU is missing,
    CommandError when it times out."""
    digest = hashlib.sha256((images / CPUINFO_IMG).read_bytes()).hexdigest()
    asked: list[tuple[int, str]] = []

    def check() -> list[Any] | None:
        res = run([_criu(), "cpuinfo", "check", "-D", str(images)], check=False, timeout=QUERY_TIMEOUT)
        asked.append((res.returncode, res.stderr or res.stdout))
        return list(asked[-1]) if res.returncode in (0, 1) else None  # not kept: killed, or CRIU's error

    answer = probe_cache.ask(_criu(), f"cpuinfo check {digest}", check)
    if not asked and isinstance(answer, list) and len(answer) == 2:
        code, output = answer
        if isinstance(code, int) and isinstance(output, str):
            return code, output
    if not asked:  # a cached answer of the wrong shape
        check()
    return asked[-1]


def log_errors(log: Path, limit: int = 8) -> list[str]:
    """The telling lines of a CRIU log: its errors, else its last lines."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    errors = [ln.strip() for ln in lines if "Error" in ln or "err" in ln.split(":")[0].lower()]
    return (errors or [ln.strip() for ln in lines if ln.strip()])[-limit:]


def read_stats(path: Path, kind: str) -> dict[str, int]:
    """Decode a stats-dump / stats-restore image; `kind` is "dump" or "restore"."""
    try:
        import pycriu
    except ImportError:
        return {}
    try:
        with path.open("rb") as f:
            img: Any = pycriu.images.load(f)
    except Exception:  # noqa: BLE001 - pycriu raises assorted errors on bad images
        return {}
    entries = img.get("entries") or []
    if not entries:
        return {}
    data = entries[0].get(kind) or {}
    fields = DUMP_FIELDS if kind == "dump" else RESTORE_FIELDS
    return {k: int(data[k]) for k in fields if data.get(k)}


def recorded_dir_modes(images: Path) -> dict[str, int]:
    """Modes CRIU recorded for the processes' root and working directories.

    CRIU refuses to restore when such a directory's mode differs from the one it dumped (podman's
    storage makes the root 0555, for instance), so restore gives them back those modes. Read
    without pycriu (criu_pb): fs_entry's cwd_id (1) and root_id (2), file_entry's id (2) and
    reg (3), reg_file_entry's name (6) and mode (10). A damaged image gives {}: CRIU says more.
    """
    wanted: set[int] = set()
    modes: dict[str, int] = {}
    try:
        for fs_img in sorted(images.glob("fs-*.img")):
            for entry in criu_pb.entries(fs_img.read_bytes(), criu_pb.FS_MAGIC):
                wanted.update(v for n, v in criu_pb.fields(entry) if n in (1, 2) and isinstance(v, int))
        files = images / "files.img"
        if not wanted or not files.is_file():
            return {}
        for entry in criu_pb.entries(files.read_bytes(), criu_pb.FILES_MAGIC):
            top = dict(criu_pb.fields(entry))
            reg = top.get(3)
            if top.get(2) not in wanted or not isinstance(reg, bytes):
                continue
            found = dict(criu_pb.fields(reg))
            name, mode = found.get(6), found.get(10)
            if isinstance(name, bytes) and isinstance(mode, int):
                modes[name.decode("utf-8", "surrogateescape")] = mode
    except (OSError, ValueError):
        return {}
    return modes
