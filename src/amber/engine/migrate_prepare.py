"""The destination's work for `amber migrate` done before the source freezes the container.

The CPU check: the source sends its cpuinfo.img on the preflight, and the destination runs
`criu cpuinfo check` on it then (check_cpu): the restore's own check is a cached answer.

Joining the container's network (its namespace, netavark's setup with the same IP and MAC, its
port mappings and DNS name) is the costliest of amber's own steps in a restore; migrate-receive
does it on the preflight, before it answers, for the container id the source sends. The restore
then finds the namespace wired (RestoreOptions.prepared: its lease is not a conflict, and
prepare_root does not join again), and a failed restore cleans it up as its own. A move called
off before the restore made the container's record (the source gone, the stream never came, a
refusal) is undone here: no lease, namespace or directory of that id is left.

The same address is configured on both hosts until the freeze. Each host's network is its own
bridge (amber gives both the same subnet and gateway, so they cannot share a link): neither
answers ARP on the other's. If the receiving amber is killed between the preflight and the
restore, the lease it took stays; the next move of that container to this host takes it back
(stale_lease), since no record of that id exists here.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.adapters import criu, netns
from amber.adapters.checkpoint_archive import CHECKPOINT_DIR
from amber.adapters.podman_format import CPUINFO_IMG
from amber.adapters.state import atomic_write_json
from amber.engine import archive_checks
from amber.engine import attachments as attach
from amber.engine.networks import Lease
from amber.engine.timing import timed
from amber.errors import AmberError, PreconditionError, UsageError

if TYPE_CHECKING:
    from amber.engine.api import Engine


def cpuinfo(engine: Engine) -> str | None:
    """The source's side: this CPU's cpuinfo.img (what its dump records; probe_cache), as hex."""
    engine.layout.tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cpuinfo-", dir=engine.layout.tmp) as d:
        with contextlib.suppress(AmberError, OSError):
            if criu.record_cpuinfo(Path(d)):
                return (Path(d) / CPUINFO_IMG).read_bytes().hex()
    return None


def check_cpu(engine: Engine, request: dict[str, Any]) -> None:
    """`criu cpuinfo check` of the source's cpuinfo.img, on the preflight: a CPU that cannot run
    the container is refused before the freeze, and the restore's own check of the same image is
    then answered from probe_cache. Raises PreconditionError when it fails."""
    raw = request.get("cpuinfo")
    if not isinstance(raw, str):
        return  # an older source: the restore checks it
    engine.layout.tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cpuinfo-", dir=engine.layout.tmp) as d:
        images = Path(d) / CHECKPOINT_DIR
        images.mkdir()
        try:
            (images / CPUINFO_IMG).write_bytes(bytes.fromhex(raw))
        except ValueError as exc:
            raise UsageError("the source sent a malformed cpuinfo", hint="run the same amber on both hosts") from exc
        result = archive_checks.check_cpu(Path(d))
    if result.failed:
        raise PreconditionError(
            f"this host cannot restore the source's container: {result.reason}", hint=result.hint or None
        )


def _usable_id(engine: Engine, cid: str) -> bool:
    """An id the restore will keep (the archive's, 64 hex digits) that no container here has."""
    hexid = len(cid) == 64 and all(ch in "0123456789abcdef" for ch in cid)
    return hexid and engine.services.containers.store.find(cid) is None


def stale_lease(engine: Engine, lease: Lease, cid: str) -> bool:
    """`lease` is the migrating container's own (id `cid`), with no container of that id here:
    what a receive killed after preparing left."""
    return bool(cid) and lease.container_id == cid and _usable_id(engine, cid)


@contextlib.contextmanager
def prepared_network(engine: Engine, request: dict[str, Any]) -> Iterator[str]:
    """Wire the namespace of the container the preflight `request` names to its network; yields
    its id ("" when nothing was prepared: no network, or an id the restore would not keep; the
    restore joins then, as from any archive). Undone on the way out unless a record of that id
    exists then. Raises what joining raises (NetworkService.attach: the address taken...)."""
    containers = engine.services.containers
    cid, raw = str(request.get("id") or ""), request.get("attachments")
    att = attach.Attachments.from_dict(raw) if isinstance(raw, dict) else None
    if att is None or att.network is None or not _usable_id(engine, cid):
        yield ""
        return
    p = containers.paths(cid)
    try:
        with timed("network joined before the freeze"):
            if containers.networks.attachments(cid):  # stale_lease: taken back
                containers.networks.detach(cid)
            p.bundle.mkdir(parents=True, exist_ok=True)
            status = request.get("network_status")
            if isinstance(status, dict):  # the interface, IP and MAC to ask for again
                atomic_write_json(p.network_status, status)
            netns.create(p.netns)
            attach.connect(
                containers.networks, cid, str(request["name"]), p.netns, att, p.network_status, keep=(True, True)
            )
        yield cid
    finally:
        if containers.store.find(cid) is None:
            with contextlib.suppress(AmberError, OSError):
                containers.networks.detach(cid)
            with contextlib.suppress(AmberError, OSError):
                netns.remove(p.netns)
            shutil.rmtree(p.dir, ignore_errors=True)
