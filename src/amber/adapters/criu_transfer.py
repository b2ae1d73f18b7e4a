"""CRIU's memory transfer: the page server (pages streamed during a dump) and lazy pages.

Per runtime: runc takes `checkpoint --page-server ADDR:PORT` (and `--lazy-pages --status-fd N`);
crun 1.21 has no such flags, so the options go in a CRIU configuration file named by
CRIU_CONFIG_FILE in the runtime's environment (crun hands it on to `criu swrk`). That file lives
in amber's work directory, never in /etc/criu (which changes every CRIU user's dumps).

The destination runs `criu page-server` (it exits when the dump ends) or `criu lazy-pages`
(it exits when every page is served). Readiness of either is its port listening, read from the
daemon's own /proc/PID/net/tcp (so it works inside another network namespace) without
connecting (CRIU's page server takes a single connection).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from amber.adapters import criu
from amber.adapters.run import QUERY_TIMEOUT, find_tool, run, spawn
from amber.errors import AmberError, PreconditionError

# CRIU's lazy page server resizes a pipe to about 3.3 MB: below this, its lazy dump dies later.
LAZY_PIPE_MIN = 4194304
PIPE_MAX_SIZE = Path("/proc/sys/fs/pipe-max-size")
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
LAZY_SOCKET = "lazy-pages.socket"  # where `criu lazy-pages` takes the restore's userfaultfds (in the work dir)
POLL = 0.005  # how often a daemon's readiness is looked at: the lazy one is waited for while the container is frozen


@dataclass(frozen=True)
class PageEndpoint:
    """Where a CRIU page server (or a lazy-pages source) listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def runc_checkpoint_args(endpoint: PageEndpoint, *, lazy: bool = False, status_fd: int | None = None) -> list[str]:
    """runc checkpoint's flags for pages sent to `endpoint` (lazy: served from here on demand)."""
    args = ["--page-server", str(endpoint)]
    if lazy:
        args = ["--lazy-pages", *args, *(["--status-fd", str(status_fd)] if status_fd is not None else [])]
    return args


def criu_config_text(endpoint: PageEndpoint, *, lazy: bool = False) -> str:
    """The CRIU configuration lines for the same (crun 1.21, through CRIU_CONFIG_FILE)."""
    return ("lazy-pages\n" if lazy else "page-server\n") + f"address {endpoint.host}\nport {endpoint.port}\n"


def page_server_argv(criu_bin: str, images: Path, endpoint: PageEndpoint) -> list[str]:
    """`criu page-server` writing the pages a dump sends into `images`."""
    return [criu_bin, "page-server", "-D", str(images), "--address", endpoint.host, "--port", str(endpoint.port)]


def lazy_pages_argv(criu_bin: str, images: Path, work: Path, source: PageEndpoint) -> list[str]:
    """`criu lazy-pages` fetching pages from the lazy source at `source` for a restore whose work
    directory is `work` (its lazy-pages.socket lives there: the restore's --work-path must match)."""
    return [
        criu_bin,
        "lazy-pages",
        "-D",
        str(images),
        "-W",
        str(work),
        "--page-server",
        "--address",
        source.host,
        "--port",
        str(source.port),
    ]


def listening(pid: int, port: int) -> bool:
    """Is a TCP socket listening on `port` in the network namespace of process `pid`?"""
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


class Daemon:
    """A CRIU daemon of the transfer (page-server, lazy-pages) run in the background."""

    def __init__(self, argv: list[str], what: str, log: Path) -> None:
        self.what = what
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc: subprocess.Popen[bytes] = spawn(argv, stdout=out.fileno(), stderr=subprocess.STDOUT)

    def wait_listening(self, port: int, timeout: float) -> None:
        """Wait until it listens on `port`. Raises AmberError (with its log) when it exits first
        or does not listen within `timeout` seconds (it is stopped then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._failed(f"exited ({self.proc.returncode}) before it listened on port {port}")
            if listening(self.proc.pid, port):
                return
            time.sleep(POLL)
        self.stop()
        raise self._failed(f"did not listen on port {port} within {timeout:g} s")

    def wait_for(self, path: Path, timeout: float) -> None:
        """Wait until `path` exists (a socket it makes). Raises AmberError (with its log) when it
        exits first or `path` is not there within `timeout` seconds (it is stopped then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._failed(f"exited ({self.proc.returncode}) before it made {path.name}")
            if path.exists():
                return
            time.sleep(POLL)
        self.stop()
        raise self._failed(f"did not make {path} within {timeout:g} s")

    def wait(self, timeout: float) -> bool:
        """Wait for it to end; True when it ended well. Stopped (False) after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout) == 0
        except subprocess.TimeoutExpired:
            self.stop()
            return False

    def stop(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def _failed(self, why: str) -> AmberError:
        return AmberError(
            f"{self.what} {why}",
            hint=f"see its log: {self.log}",
            details=criu.log_errors(self.log),
        )


def start_page_server(images: Path, endpoint: PageEndpoint, log: Path, *, timeout: float = 30.0) -> Daemon:
    """`criu page-server` into `images`, listening on `endpoint`. Raises PreconditionError (no CRIU)
    or AmberError (it did not come up)."""
    images.mkdir(parents=True, exist_ok=True)
    daemon = Daemon(page_server_argv(find_tool("criu", "receive pages"), images, endpoint), "criu page-server", log)
    daemon.wait_listening(endpoint.port, timeout)
    return daemon


def start_lazy_pages(images: Path, work: Path, source: PageEndpoint, log: Path, *, timeout: float = 30.0) -> Daemon:
    """`criu lazy-pages` for a lazy restore from `images` (work dir `work`), fetching from `source`;
    returns once it takes restores (its socket in `work`). Raises PreconditionError (no CRIU) or
    AmberError (it did not come up)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / LAZY_SOCKET).unlink(missing_ok=True)  # a stale one would pass for readiness
    argv = lazy_pages_argv(find_tool("criu", "fetch lazy pages"), images, work, source)
    daemon = Daemon(argv, "criu lazy-pages", log)
    daemon.wait_for(work / LAZY_SOCKET, timeout)
    return daemon


def merge_received(received: Path, images: Path) -> list[str]:
    """Move the images a page server wrote in `received` into the dump's `images` (the names
    moved). Raises AmberError when one is already there (two dumps mixed) or is not a file."""
    moved = []
    for item in sorted(received.iterdir()):
        target = images / item.name
        if not item.is_file() or item.is_symlink() or target.exists():
            raise AmberError(
                f"cannot add received page image {item.name} to {images}: "
                + ("it is already there" if target.exists() else "it is not a regular file"),
                hint="receive each dump into its own empty directory",
            )
        shutil.move(str(item), target)
        moved.append(item.name)
    return moved


def pipe_max_size() -> int:
    """fs.pipe-max-size of this host (0 when it cannot be read)."""
    try:
        return int(PIPE_MAX_SIZE.read_text().strip())
    except (OSError, ValueError):
        return 0


def uffd_works() -> bool:
    """Can CRIU use userfaultfd for lazy restores here (`criu check --feature uffd-noncoop`)?
    Raises PreconditionError when CRIU is missing."""
    criu_bin = find_tool("criu", "restore lazily")
    return run([criu_bin, "check", "--feature", "uffd-noncoop"], check=False, timeout=QUERY_TIMEOUT).returncode == 0


def check_lazy_host(*, raise_pipe_size: bool = False) -> None:
    """Raises PreconditionError unless this host can send or take pages lazily: CRIU >= 4.2,
    fs.pipe-max-size >= LAZY_PIPE_MIN (raised to it only with `raise_pipe_size`), userfaultfd."""
    version = criu.version()
    if version and version < criu.MIN_VERSION:
        raise PreconditionError(
            f"lazy memory transfer needs CRIU >= 4.2; this host has {criu.version_string()}",
            hint="install CRIU 4.2 or newer (make setup), or move the container with --mode copy or page-server",
        )
    size = pipe_max_size()
    if size < LAZY_PIPE_MIN:
        if not raise_pipe_size:
            raise PreconditionError(
                f"lazy memory transfer needs fs.pipe-max-size >= {LAZY_PIPE_MIN}; this host has {size}: CRIU's "
                "lazy page server resizes a pipe to about 3.3 MB, and below that its dump fails midway",
                hint=f"raise it (sysctl -w fs.pipe-max-size={LAZY_PIPE_MIN}) or let amber do it for this "
                "transfer, or use --mode page-server",
            )
        PIPE_MAX_SIZE.write_text(f"{LAZY_PIPE_MIN}\n")
    if not uffd_works():
        raise PreconditionError(
            "lazy memory transfer needs userfaultfd, which CRIU cannot use here "
            "(`criu check --feature uffd-noncoop` fails)",
            hint="use a kernel with CONFIG_USERFAULTFD (and /dev/userfaultfd), or use --mode page-server",
        )


def refuse_precopy() -> None:
    """Raises PreconditionError when the kernel cannot track dirty memory (pre-copy impossible)."""
    if not criu.dirty_tracking():
        raise PreconditionError(
            "pre-copy migration needs dirty-memory tracking, which this kernel lacks "
            "(CONFIG_MEM_SOFT_DIRTY is not set; `criu check --feature mem_dirty_track` fails)",
            hint="use --mode page-server or --mode lazy",
        )
