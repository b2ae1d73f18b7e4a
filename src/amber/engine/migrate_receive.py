"""The destination's side of `amber migrate`: `amber migrate-receive`, run through ssh.

It reads the source's preflight request (one JSON line on stdin), checks this host (runtime kind,
CRIU version, CPU flags, image, name free, IP and MAC free on a network of the same name and
subnet), joins the container's network namespace to its network before anything is frozen
(engine/migrate_prepare.py), and answers on stdout: a failure ({"ok": false, "error", "hint", "exit"}) or the TCP
address and port it listens on (in page-server mode also "page_port", where a CRIU page
server here takes the dump's pages; they are put into the archive's images before the restore,
and removed from this host's disk afterwards). The source streams the archive there; restore reads it straight
from the connection (never a file on disk) and restores it with its name, IP and MAC; the answer is then
{"ok": true, "event": "running", "id"} or the restore's failure. The source answers "done"; only
then is the move committed ({"event": "committed"}): without it the container is removed here
again, because the source, not knowing, runs it again there (never both running).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from amber.adapters import criu
from amber.adapters import run as runners
from amber.engine.migrate import PROTOCOL, cpu_flags
from amber.engine.migrate_channel import MAX_LINE
from amber.engine.migrate_lazy import LazyPages, source_endpoint
from amber.engine.migrate_pages import free_port, page_receiver
from amber.engine.migrate_prepare import check_cpu, prepared_network, stale_lease
from amber.engine.restore_options import RestoreOptions
from amber.engine.runtime_rule import select_runtime
from amber.engine.transfer import MemoryMode, PageEndpoint, PageReceiver, check_host
from amber.errors import AmberError, ConflictError, NotFoundError, PreconditionError, UsageError

if TYPE_CHECKING:
    from amber.engine.api import Engine

ACCEPT_TIMEOUT = 120.0  # the source connects right after the preflight's answer
STREAM_IDLE_TIMEOUT = 120.0  # silence on the stream (the source's dump may pause it a while)
COMMIT_TIMEOUT = 60.0  # the source's "done" after it heard the container runs here


def receive(engine: Engine, stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Serve one migration on this host; the exit code. Raises nothing for a failure it could
    report on stdout (it is reported there, and its exit code returned)."""
    try:
        request = _read(stdin)
        preflight(engine, request)
        listener = socket.socket(socket.AF_INET6 if ":" in _local_address() else socket.AF_INET)
    except AmberError as exc:
        return _fail(stdout, exc)
    with listener, contextlib.ExitStack() as stack:
        listener.bind((_local_address(), 0))
        listener.listen(1)
        listener.settimeout(ACCEPT_TIMEOUT)
        address, port = listener.getsockname()[:2]
        try:
            pages = stack.enter_context(_page_receiver(engine, request))
        except AmberError as exc:
            return _fail(stdout, exc)
        try:
            prepared = stack.enter_context(prepared_network(engine, request))
        except AmberError as exc:
            return _fail(stdout, exc)
        extra = {"page_port": pages.endpoint.port} if pages is not None else {}
        _write(stdout, {"ok": True, "address": address, "port": port, **extra})
        try:
            lazy = (
                LazyPages(source_endpoint(_read(stdin)), stack, engine.layout.tmp)
                if request.get("mode") == "lazy"
                else None
            )
            container = _receive_and_restore(engine, listener, stdin, request, pages, lazy, prepared)
        except AmberError as exc:
            return _fail(stdout, exc)
        except OSError as exc:
            return _fail(
                stdout,
                AmberError(
                    f"the archive stream from the source broke: {exc.strerror or exc}",
                    hint="check the link between the hosts",
                ),
            )
        _write(stdout, {"ok": True, "event": "running", "id": container})
        if lazy is not None:  # the source serves the pages until the daemon has them all
            served = lazy.served()
            _write(stdout, served)
            if not served["ok"]:
                with contextlib.suppress(AmberError):
                    engine.remove(container, force=True)
                return 1
    return _commit_or_roll_back(engine, container, stdin, stdout)


def _commit_or_roll_back(engine: Engine, container: str, stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """The container runs here: keep it only if the source heard so (its "done" comes within
    COMMIT_TIMEOUT); otherwise the source runs it again, so remove it here (never both)."""
    done: dict[str, Any] = {}
    with contextlib.suppress(OSError, AmberError):
        if select.select([stdin], [], [], COMMIT_TIMEOUT)[0]:
            done = _read(stdin)
    if done.get("op") == "done":
        _write(stdout, {"ok": True, "event": "committed"})
        return 0
    with contextlib.suppress(AmberError):
        engine.remove(container, force=True)
    return 1


@contextlib.contextmanager
def _page_receiver(engine: Engine, request: dict[str, Any]) -> Iterator[PageReceiver | None]:
    """page-server mode: a CRIU page server listening on this host's address (a free port), its
    pages in a scratch directory removed afterwards; None in the other modes. Raises AmberError
    (PreconditionError: no CRIU) when it does not come up."""
    if request.get("mode") != "page-server":
        yield None
        return
    need = request.get("memory")
    endpoint = PageEndpoint(_local_address(), free_port(_local_address()))
    with page_receiver(engine.layout, need if isinstance(need, int) else 0, endpoint) as rx:
        yield rx


def _receive_and_restore(
    engine: Engine,
    listener: socket.socket,
    stdin: IO[bytes],
    request: dict[str, Any],
    pages: PageReceiver | None,
    lazy: LazyPages | None = None,
    prepared: str = "",
) -> str:
    conn = _accept(listener, stdin)
    conn.settimeout(STREAM_IDLE_TIMEOUT)
    with conn, conn.makefile("rb") as stream:
        # page-server mode: the archive holds every image but the pages, the page server's are
        # added before the restore; lazy: criu lazy-pages fetches them while the container runs.
        opts = RestoreOptions(
            runtime=engine.runtime_choice,
            tcp_established=bool(request.get("tcp_established")),
            complete_images=pages.deliver if pages is not None else None,
            lazy_pages=lazy.start if lazy is not None else None,
            prepared=prepared,
        )
        with runners.using(engine.runner):
            return engine.services.checkpoints.restore_stream(stream, Path("the migration stream"), opts)[0].id


def _accept(listener: socket.socket, stdin: IO[bytes]) -> socket.socket:
    """The source's stream connection. Raises AmberError when the control channel ends (or says
    anything) first: the source called the move off; or when none comes in ACCEPT_TIMEOUT."""
    ready = select.select([listener.fileno(), stdin.fileno()], [], [], ACCEPT_TIMEOUT)[0]
    if listener.fileno() in ready:
        return listener.accept()[0]
    if ready:
        raise AmberError(
            "the source called the move off before streaming the archive (its control channel ended)",
            hint="see the source's error; run amber migrate there again",
        )
    raise AmberError(
        f"the source did not connect to stream the archive within {ACCEPT_TIMEOUT:g} s",
        hint="check that the source reaches this host's address (a firewall?)",
    )


def preflight(engine: Engine, request: dict[str, Any]) -> None:
    """Raises the error (with its hint) of the first check this host fails."""
    if request.get("op") != "preflight" or request.get("protocol") != PROTOCOL:
        raise UsageError(
            "the source sent no preflight this amber understands",
            hint="run the same amber version on both hosts",
        )
    name = str(request["name"])
    select_runtime(str(request["runtime"]), None, f"container {name}")  # the runtime rule
    if request.get("mode") == "lazy":
        check_host(MemoryMode.LAZY)  # fs.pipe-max-size, userfaultfd, CRIU >= 4.2
    theirs, ours = tuple(int(x) for x in request["criu"]), criu.version()
    if ours < theirs:
        raise PreconditionError(
            f"CRIU here ({'.'.join(map(str, ours))}) is older than the source's ({'.'.join(map(str, theirs))})",
            hint="install the same CRIU (or newer) on the destination: make setup",
        )
    missing = sorted(set(request.get("cpu_flags") or []) - set(cpu_flags()))
    if missing:
        raise PreconditionError(
            f"this CPU lacks features the source's has: {', '.join(missing[:12])}",
            hint="migrate between hosts with the same CPU features (criu check --cpu-cap)",
        )
    check_cpu(engine, request)  # criu cpuinfo check, now rather than in the frozen time
    _check_image(engine, request["image"])
    if engine.services.containers.store.find(name) is not None:
        raise ConflictError(
            f"the name {name} is already in use on the destination",
            hint=f"remove that container there (amber rm -f {name}), then migrate again",
        )
    for net in request.get("networks") or []:
        _check_network(engine, net, name, str(request.get("id") or ""))


def _check_image(engine: Engine, image: dict[str, Any]) -> None:
    for ref in [str(image["id"]), *map(str, image.get("names") or [])]:
        with contextlib.suppress(NotFoundError, UsageError):
            engine.services.images.get(ref)
            return
    names = ", ".join(image.get("names") or []) or str(image["id"])[:12]
    raise NotFoundError(
        f"image {names} is not on the destination",
        hint="import or pull the same image there first (amber image import / amber pull)",
    )


def _check_network(engine: Engine, net: dict[str, Any], name: str, request_id: str) -> None:
    networks = engine.services.networks
    try:
        here = networks.get(str(net["name"]))
    except NotFoundError as exc:
        raise NotFoundError(
            f"network {net['name']} (which container {name} is on) does not exist on the destination",
            hint=f"create it there with the same subnet: amber network create --subnet {net['subnet']} {net['name']}",
        ) from exc
    if here.subnet != net["subnet"]:
        raise ConflictError(
            f"network {net['name']} has subnet {here.subnet} on the destination, {net['subnet']} on the source",
            hint="the container keeps its IP: give the network the same subnet on both hosts",
        )
    for lease in networks.leases(here.name):
        if stale_lease(engine, lease, request_id):
            continue  # this container's own, left by a move of it cut short here: taken back
        if lease.ip == net["ip"] or lease.mac == net["mac"]:
            raise ConflictError(
                f"address {net['ip']} ({net['mac']}) of container {name} is taken on network {here.name} "
                f"of the destination, by {lease.container_name or lease.container_id[:12]}",
                hint="free that address on the destination, then migrate again",
            )


def _local_address() -> str:
    """The address the ssh connection came in on (SSH_CONNECTION's third field), else all."""
    fields = os.environ.get("SSH_CONNECTION", "").split()
    return fields[2] if len(fields) == 4 else "0.0.0.0"  # noqa: S104 - no ssh: a local run (tests)


def _read(stdin: IO[bytes]) -> dict[str, Any]:
    line = stdin.readline(MAX_LINE)
    if not line:
        raise UsageError("the source closed the channel", hint="run amber migrate on the source")
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise UsageError("the source sent a line that is not JSON", hint="run amber migrate on the source") from exc
    if not isinstance(message, dict):
        raise UsageError("the source sent a JSON value that is not an object", hint="run amber migrate on the source")
    return message


def _write(stdout: IO[bytes], message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        stdout.write(json.dumps(message).encode() + b"\n")
        stdout.flush()


def _fail(stdout: IO[bytes], exc: AmberError) -> int:
    _write(stdout, {"ok": False, "error": exc.message, "hint": exc.hint or "", "exit": int(exc.exit_code)})
    return int(exc.exit_code)
