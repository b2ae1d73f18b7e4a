"""`amber migrate NAME ssh://[user@]host[:port]`: move a running container to another host.

The flow (copy mode, the default): ssh runs the destination's `amber migrate-receive`
(engine/migrate_receive.py); the source sends what the destination must check (runtime kind,
CRIU version, CPU flags and cpuinfo.img, image, name, network address and the container's id,
ports and memory size) and nothing is frozen until it answers; by then the destination has also
joined the container's network namespace to its network (engine/migrate_prepare.py), so that
amber's own costliest restore step is out of the frozen time.
The destination then listens on a TCP port on its own address; the source checkpoints the
container (kept images) straight into that connection as a podman-format archive; the destination
restores it, with the same name, IP and MAC on its network of the same name and subnet, and says
it runs. Only then is the source removed (its address goes with it). Until then any failure (ssh
dropped, stream cut, destination restore failed) restores the source from its kept images:
running stays running. The destination keeps the container only when the source, having heard it
runs, says "done" (it removes it otherwise, as the source then runs it again): never both running.

`--mode page-server`: the destination also runs a CRIU page server and says its port; the dump
sends its pages there during the freeze (and a copy to a page server here, engine/migrate_pages.py,
so that a failed move still resumes the source), the archive carries the other images, and the
destination puts the pages into them before the restore. `--mode lazy` (engine/migrate_lazy.py):
the dump leaves the memory here and CRIU serves it to the destination's `criu lazy-pages` while
the container already runs there; until "running" a failure calls the dump off (the container
resumes here), after it the source stays frozen until every page is served, and only then is it
removed (the weaker guarantee: if the source dies before that, the container is lost).
Pre-copy is refused where the kernel does not track dirty memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import socket
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from amber.adapters import criu
from amber.adapters import run as runners
from amber.adapters.checkpoint_archive import Compression
from amber.engine import attachments as attach
from amber.engine import faults, migrate_prepare, scratch
from amber.engine.checkpoint import CheckpointOptions
from amber.engine.lazy_dump import SERVE_TIMEOUT, LazySource
from amber.engine.lazy_relay import LazyRelay
from amber.engine.migrate_channel import (
    CONNECT_TIMEOUT,
    REPLY_TIMEOUT,
    ChannelError,
    Control,
    SshDest,
    peer_error,
    ssh_argv,
)
from amber.engine.migrate_lazy import source_message
from amber.engine.migrate_modes import DEFAULT_MODE, MODES
from amber.engine.migrate_pages import LOCAL as LOOPBACK
from amber.engine.migrate_pages import SourcePages, free_port, source_pages
from amber.engine.transfer import MemoryMode, PageEndpoint, check_host, dump_to_page_server
from amber.errors import AmberError, ConflictError, PreconditionError, UsageError
from amber.models import Status

if TYPE_CHECKING:
    from amber.engine.api import Engine

RESTORE_TIMEOUT = 600.0  # the destination's unpack and restore, after the stream ended
PROTOCOL = 1


@dataclasses.dataclass(frozen=True)
class MigrateOptions:
    dest: SshDest
    remote_amber: str = "amber"  # the command line that runs amber on the destination
    identity: str | None = None  # ssh -i
    ssh_options: tuple[str, ...] = ()  # ssh -o, each
    mode: str = DEFAULT_MODE
    tcp_established: bool = False
    pre_copy: bool = False
    keep_checkpoint: bool = False  # after success, keep the source's record and images (checkpointed)

    def validate(self) -> None:
        """Raises UsageError for a mode amber does not know or an empty --remote-amber,
        PreconditionError for a mode or pre-copy this host cannot do."""
        if self.mode not in MODES:
            raise UsageError(f"unknown --mode {self.mode!r}", hint=f"give one of: {', '.join(MODES)}")
        if not shlex.split(self.remote_amber):
            raise UsageError("--remote-amber is empty", hint="give the command that runs amber there, e.g. amber")
        if self.pre_copy and not criu.dirty_tracking():
            raise PreconditionError(
                "pre-copy migration is not possible on this host: the kernel does not track dirty memory "
                "(no CONFIG_MEM_SOFT_DIRTY)",
                hint="leave out --pre-copy: --mode copy (or page-server, lazy) moves the container in one go",
            )
        if self.pre_copy:
            raise PreconditionError(
                "pre-copy migration is not built yet", hint="leave out --pre-copy (--mode copy moves it in one go)"
            )
        if self.mode == "lazy" and self.keep_checkpoint:
            raise UsageError(
                "--keep cannot be used with --mode lazy: a lazy move leaves no memory image here",
                hint="leave out --keep, or use --mode copy or page-server",
            )
        if self.mode == "lazy":
            check_host(MemoryMode.LAZY)  # fs.pipe-max-size, userfaultfd, CRIU >= 4.2: before any freeze

    def remote(self) -> list[str]:
        return [*shlex.split(self.remote_amber), "migrate-receive"]


@dataclasses.dataclass(frozen=True)
class MigrateReport:
    name: str
    dest: str
    mode: str
    id: str  # the container's id on the destination
    sent: int  # archive bytes sent
    frozen_s: float  # from the checkpoint's start to the destination running
    total_s: float
    served: dict[str, Any] | None = None  # lazy: the destination's report of the pages' transfer


def cpu_flags() -> list[str]:
    """This host's CPU flags (/proc/cpuinfo's first "flags" line); [] where there is none."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):  # noqa: SIM115
            if line.startswith("flags"):
                return sorted(set(line.split(":", 1)[1].split()))
    return []


def preflight_request(engine: Engine, name: str, opts: MigrateOptions) -> dict[str, Any]:
    """What the destination checks before anything is frozen. Raises NotFoundError (no such
    container), ConflictError (not running)."""
    services = engine.services
    c = services.containers.store.get(name)
    if services.containers.refresh(c).status is not Status.RUNNING:
        raise ConflictError(
            f"container {c.name} is not running: only a running container can be migrated",
            hint=f"start it first (amber start {c.name}), or move its archive: amber checkpoint --export",
        )
    networks = [
        {"name": net, "subnet": services.networks.get(net).subnet, "ip": lease.ip, "mac": lease.mac}
        for net, lease in services.networks.attachments(c.id).items()
    ]
    image = services.images.get(c.image_id)
    status = attach.read_status(services.containers.paths(c.id).network_status)
    return {
        "op": "preflight",
        "protocol": PROTOCOL,
        "mode": opts.mode,
        "name": c.name,
        # the destination joins the container's network with these before the freeze
        "id": c.id,
        "attachments": services.containers.attachments(c).to_dict(),
        "network_status": status.to_dict() if status is not None else None,
        "runtime": c.runtime,
        "criu": list(criu.version()),
        "cpu_flags": cpu_flags(),
        "cpuinfo": migrate_prepare.cpuinfo(engine),  # checked there before the freeze
        "memory": scratch.container_memory(services.containers.cgroups_path(c)),  # where pages go
        "image": {"id": image.id, "names": list(image.names)},
        "networks": networks,
        "tcp_established": opts.tcp_established,
    }


def migrate(
    engine: Engine, name: str, opts: MigrateOptions, *, say: Callable[[str], None] = lambda _: None
) -> MigrateReport:
    """Move running container `name` to `opts.dest`; `say` hears each step.

    Raises UsageError, PreconditionError (options, this host), NotFoundError/ConflictError (the
    container), the destination's own refusal (its error class and exit code), ChannelError (ssh
    or the stream broke), or the restore's failure; in every failure the container runs on here
    (or, when even its own restore failed, an AmberError says so and how to restore it)."""
    opts.validate()
    started = time.monotonic()
    request = preflight_request(engine, name, opts)
    control = Control(ssh_argv(opts.dest, opts.remote(), identity=opts.identity, options=opts.ssh_options), opts.dest)
    try:
        control.send(request)
        answer = control.receive(REPLY_TIMEOUT)
        if not answer.get("ok"):
            raise peer_error(answer, opts.dest)
        say(f"preflight passed on {opts.dest}; streaming to {answer['address']}:{answer['port']}")
        faults.point("migrate-after-preflight")  # the tests' source dying once the destination prepared
        frozen = time.monotonic()
        address = (str(answer["address"]), int(answer["port"]))
        remote_pages = _page_endpoint(opts, answer)
        with contextlib.ExitStack() as stack:
            pages = (
                None
                if remote_pages is None
                else stack.enter_context(source_pages(engine.layout, int(request["memory"]), remote_pages))
            )
            sent, running = _hand_off(engine, name, opts, control, address, pages, say)
        _commit(control, name, opts.dest)
    finally:
        control.close()
    if "served" not in running:
        say(f"{name} runs on {opts.dest} ({sent} bytes sent)")
    if opts.keep_checkpoint:
        engine.services.containers.store.save(
            dataclasses.replace(engine.services.containers.store.get(name), status=Status.CHECKPOINTED)
        )
    else:
        engine.remove(name, force=True)
    now = time.monotonic()
    ran = float(running.get("ran_at", now))
    report = MigrateReport(
        name, str(opts.dest), opts.mode, str(running.get("id", "")), sent, ran - frozen, now - started
    )
    return dataclasses.replace(report, served=running.get("served"))


def _page_endpoint(opts: MigrateOptions, answer: dict[str, Any]) -> PageEndpoint | None:
    """page-server mode: where the destination's page server listens. Raises ChannelError when
    the destination did not start one (an amber that does not know the mode)."""
    if opts.mode != "page-server":
        return None
    if not isinstance(answer.get("page_port"), int):
        raise ChannelError(
            f"the destination {opts.dest} started no page server for --mode page-server",
            hint="run the same amber version on both hosts, or use --mode copy",
        )
    host, port = _reachable(opts.dest, (str(answer["address"]), int(answer["page_port"])))
    return PageEndpoint(host, port)


def _checkpoint_into(
    engine: Engine,
    name: str,
    opts: MigrateOptions,
    stream: IO[bytes],
    pages: SourcePages | None,
    lazy: LazySource | None = None,
) -> None:
    """Checkpoint `name` (images kept) as an uncompressed archive into `stream`; with `pages`, its
    memory goes to the page servers (the destination's, and the copy here) instead, during the
    dump; with `lazy`, it is served from here after the archive (engine.lazy_dump). Raises as
    engine.checkpoint does (a failed dump leaves it running)."""
    if lazy is not None:
        copts = CheckpointOptions(
            export_to=stream, compression=Compression.NONE, tcp_established=opts.tcp_established, lazy=lazy
        )
        with runners.using(engine.runner):
            engine.services.checkpoints.checkpoint([name], copts)
        return
    if pages is None:
        engine.checkpoint(name, export_to=stream, compress="none", keep=True, tcp_established=opts.tcp_established)
        return
    copts = CheckpointOptions(
        export_to=stream, compression=Compression.NONE, keep=True, tcp_established=opts.tcp_established
    )
    with runners.using(engine.runner):
        dump_to_page_server(engine.services.checkpoints, name, pages.endpoint, copts)


def _hand_off(
    engine: Engine,
    name: str,
    opts: MigrateOptions,
    control: Control,
    address: tuple[str, int],
    pages: SourcePages | None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[int, dict[str, Any]]:
    """Checkpoint `name` into the destination's port (its pages through `pages`, when given) and
    wait for it to run there; any failure after the freeze restores the source (with the copy
    of its pages kept here, in page-server mode; lazy mode: the dump is called off instead).
    Returns (bytes sent on the stream, the destination's report)."""
    sock = socket.create_connection(_reachable(opts.dest, address), timeout=CONNECT_TIMEOUT)
    sock.settimeout(RESTORE_TIMEOUT)
    stopped = False
    running: dict[str, Any] = {}
    relay: LazyRelay | None = None
    try:
        with sock.makefile("wb") as stream:

            def hand_off() -> None:  # lazy: the archive is written, the pages wait here
                stream.flush()
                running.update(_running_there(sock, control, opts.dest))
                assert relay is not None
                relay.commit()  # it runs there: the destination's end of the transfer is CRIU's now
                say(f"{name} runs on {opts.dest} ({running['sent']} bytes sent); serving its memory from here")

            lazy = None
            if opts.mode == "lazy":
                relay, lazy = _lazy_source(sock, control, hand_off)
            _checkpoint_into(engine, name, opts, stream, pages, lazy)
        if lazy is not None:  # every page served: the destination's report of it
            return int(running["sent"]), {**running, "served": _served(control, name, opts.dest, say)}
        stopped = True
        running = _running_there(sock, control, opts.dest)
        return int(running["sent"]), running
    except BaseException as exc:
        if stopped:
            _resume(engine, name, exc, pages)
        raise
    finally:
        sock.close()
        if relay is not None:
            relay.close()


def _running_there(sock: socket.socket, control: Control, dest: SshDest) -> dict[str, Any]:
    """End the archive's stream (the destination restores now) and hear that the container runs
    there. Raises the destination's error, or ChannelError."""
    sent = _sent(sock)
    sock.shutdown(socket.SHUT_WR)
    running = control.receive(RESTORE_TIMEOUT)
    if not running.get("ok"):
        raise peer_error(running, dest)
    return {**running, "sent": sent, "ran_at": time.monotonic()}


def _lazy_source(sock: socket.socket, control: Control, hand_off: Callable[[], None]) -> tuple[LazyRelay, LazySource]:
    """lazy mode: CRIU serves the pages on a free loopback port, behind a relay on the address the
    stream leaves from (the destination reaches it there, and hears where); the relay keeps a
    failing destination from ending CRIU's transfer as a success (engine/lazy_relay.py).
    Raises AmberError when it cannot listen."""
    here = str(sock.getsockname()[0])
    criu_end = PageEndpoint(LOOPBACK, free_port(LOOPBACK))
    try:
        relay = LazyRelay(here, criu_end)
    except OSError as exc:
        raise AmberError(
            f"cannot listen for the destination's page requests on {here}: {exc.strerror or exc}",
            hint="check this host's address on the link to the destination",
        ) from exc
    control.send(source_message(relay.endpoint))
    return relay, LazySource(criu_end, hand_off, abort=relay.abort)


def _served(control: Control, name: str, dest: SshDest, say: Callable[[str], None]) -> dict[str, Any]:
    """lazy mode: the destination's report that every page arrived (said to the user).
    Raises AmberError when the transfer failed there (the container is lost there)."""
    try:
        served = control.receive(SERVE_TIMEOUT)
        if served.get("event") != "served" or not served.get("ok"):
            raise peer_error(served, dest)
    except AmberError as exc:
        raise AmberError(
            f"container {name} ran on {dest}, and every page was served from here, but the destination "
            f"did not report that they all arrived ({exc.message}): it may be lost on both hosts",
            hint=f"see whether it runs there (amber ps on {dest}); lazy mode's guarantee ends once it runs there",
            details=exc.details,
        ) from exc
    mib = int(served.get("bytes", 0)) / (1 << 20)
    say(f"the lazy transfer ended: {mib:.1f} MiB of memory served in {float(served.get('seconds', 0)):.2f} s")
    return served


def _sent(sock: socket.socket) -> int:
    """Bytes the peer acknowledged on `sock` (TCP_INFO's tcpi_bytes_acked), -1 where unknown."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return -1
    return int.from_bytes(info[120:128], "little") if len(info) >= 128 else -1


def _commit(control: Control, name: str, dest: SshDest) -> None:
    """Tell the destination it may keep the container; hear it did. Raises AmberError when that
    answer does not come: the source then stays checkpointed (its images kept), never running."""
    try:
        control.send({"op": "done"})
        committed = control.receive(REPLY_TIMEOUT)
    except ChannelError as exc:
        raise AmberError(
            f"container {name} was restored on {dest} but the channel broke before the move was "
            f"committed ({exc}): it is left checkpointed here, not running",
            hint=f"see whether it runs there (amber ps on {dest}): if it does, amber rm {name} here; "
            f"if not, amber restore {name} here",
        ) from exc
    if committed.get("event") != "committed":
        raise peer_error(committed, dest)


def _reachable(dest: SshDest, address: tuple[str, int]) -> tuple[str, int]:
    """The destination's stream address: the one it listens on, else the ssh host's."""
    host, port = address
    return (host if host not in ("", "0.0.0.0", "::") else dest.host, port)  # noqa: S104 - a wildcard, read only


def _resume(engine: Engine, name: str, cause: BaseException, pages: SourcePages | None = None) -> None:
    """The move failed after the dump stopped `name`: restore it here from its kept images (with
    `pages`' copy of its memory put back first). Raises AmberError when that restore fails too
    (naming both failures)."""
    try:
        if pages is not None:
            c = engine.services.containers.store.get(name)
            pages.restore_into(engine.services.containers.paths(c.id).checkpoint)
        engine.restore(name, keep=False)
    except AmberError as failure:
        raise AmberError(
            f"migrating container {name} failed ({cause}), and restoring it here failed too: {failure}",
            hint=f"its checkpoint is kept: amber restore {name} tries again",
            details=failure.details,
        ) from cause


__all__ = ["DEFAULT_MODE", "MODES", "ChannelError", "MigrateOptions", "MigrateReport", "SshDest", "migrate"]
