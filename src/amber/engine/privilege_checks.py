"""The checks restore and `amber archive check` make of an archive's privileges.

Restore confines the archive's spec (engine/confinement.py) and checks the credentials of the
tasks in its images (engine/task_credentials.py) and their rlimits and mounts
(engine/image_limits.py) before any work: `refuse` turns what they find into the ArchiveError
(exit 6), unless the user opted in with `--trust-archive`. `restore_spec` builds the restored
container's config.json from the confined spec; `privileges` is `amber archive check`'s row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amber.adapters import cgroups
from amber.adapters.criu_images import ImageDir, read_credentials, read_processes
from amber.engine import spec as specs
from amber.engine.archive_models import CheckResult, CheckStatus
from amber.engine.confinement import Confined, Violation, _dict, _names, _short, confine
from amber.engine.image_limits import image_limit_violations, lower_host_sized
from amber.engine.task_credentials import credential_violations
from amber.errors import ArchiveError

log = logging.getLogger("amber.restore")


# ===================================== refusal and the check row =============================
def refuse(violations: Sequence[Violation], source: str) -> None:
    """Raise the ArchiveError (exit 6) naming every field, if there is any violation."""
    if not violations:
        return
    fields = ", ".join(dict.fromkeys(v.field for v in violations))
    raise ArchiveError(
        f"checkpoint archive {source} asks for more than amber allows a container: {fields}",
        hint="make the archive from a container amber could run, or, only if you trust its origin to run "
        "code as root on this host, restore it with --trust-archive",
        details=[str(v) for v in violations[:20]],
    )


def privileges_row(violations: Sequence[Violation]) -> CheckResult:
    """`amber archive check`'s row: privileges ok, or the fields asked beyond amber's."""
    if not violations:
        return CheckResult("privileges", CheckStatus.OK, "ok: the archive asks for nothing amber does not allow")
    fields = ", ".join(dict.fromkeys(v.field for v in violations))
    return CheckResult(
        "privileges",
        CheckStatus.FAIL,
        f"asks for more than amber allows: {fields}",
        "restore it only if you trust its origin: amber restore --trust-archive",
    )


# ===================================== the restore path ======================================
def reference_spec(archive: Mapping[str, Any]) -> dict[str, Any]:
    """The spec amber would generate for the archive's container (paths are placeholders)."""
    process = _dict(archive.get("process"))
    return specs.generate(
        cid="",
        hostname=str(archive.get("hostname") or ""),
        rootfs=Path("/"),
        args=_names(process.get("args")),
        env=_names(process.get("env")),
        cwd=str(process.get("cwd") or "/"),
        netns=Path("/"),
        cgroups_path="",
    )


def refuse_shared_pid(archive: Mapping[str, Any], source: str) -> None:
    """Raise ArchiveError (exit 6) when the spec joins an existing PID namespace (a path): the
    container was one of a pod sharing a PID namespace (Kubernetes shareProcessNamespace), and
    CRIU cannot restore one of its processes without the others. No trust lifts this."""
    namespaces = _dict(archive.get("linux")).get("namespaces")
    for ns in namespaces if isinstance(namespaces, list) else []:
        if isinstance(ns, dict) and ns.get("type") == "pid" and ns.get("path"):
            raise ArchiveError(
                f"checkpoint archive {source} is of a container in a pod sharing one PID namespace "
                f"(its spec joins the pid namespace {_short(ns['path'])}): it cannot be restored alone",
                hint="checkpoint the container from a pod without a shared PID namespace "
                "(shareProcessNamespace: false), or restore it in its own engine's pod",
            )


def check_spec(archive: Mapping[str, Any], source: str, *, trust: bool) -> Confined:
    """The archive's spec confined; raises ArchiveError (exit 6) for a shared PID namespace, and
    on any other violation unless `trust`."""
    refuse_shared_pid(archive, source)
    confined = confine(archive, reference_spec(archive))
    if not trust:
        refuse(confined.violations, source)
    return confined


def image_violations(images: ImageDir, archive: Mapping[str, Any]) -> list[Violation]:
    """Decodes the process tree (CRIU can spin on images it cannot parse), then each task's creds,
    rlimits and the mounts CRIU would make (engine/image_limits.py).

    Raises ArchiveError when an image does not decode.
    """
    processes = read_processes(images)
    tasks = read_credentials(images, processes)
    spec = confine(archive, reference_spec(archive)).spec
    strict = _dict(archive.get("process")).get("noNewPrivileges") is True
    return credential_violations(tasks, spec, strict_nnp=strict) + image_limit_violations(images, processes, spec)


def check_images(images: ImageDir, archive: Mapping[str, Any], *, trust: bool) -> None:
    """Refuse (ArchiveError, exit 6) a task whose credentials exceed the effective spec, unless
    `trust`; then lower the host-sized rlimits to this host's (engine/image_limits.py) in `images`,
    a restore's own unpacked copy."""
    violations = image_violations(images, archive)
    if not trust:
        refuse(violations, images.source)
    spec = confine(archive, reference_spec(archive)).spec
    for r in lower_host_sized(images, read_processes(images), spec):
        log.info("pid %d: %s lowered to soft %d, hard %d (this host's ceiling)", r.pid, r.name, r.soft, r.hard)


def restore_spec(
    archive: Mapping[str, Any],
    *,
    rootfs: Path,
    netns: Path,
    root: Path,
    bundle: Path,
    cid: str,
    source: str,
    trust: bool,
    provided: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The config.json of a container restored from `archive` into amber root `root`: confined.

    With `trust`, the archive's own spec (only its host handles rewritten). `provided` maps bind
    destinations to sources amber provides (its named volumes; binds the user asked for): those
    binds get them, every other bind an empty source in the bundle. Raises ArchiveError on a
    violation (without `trust`) and ConflictError when the container's cgroup exists already.
    """
    confined = check_spec(archive, source, trust=trust)
    base = dict(archive) if trust else confined.spec
    if not trust:  # the leaf is new, but CRIU needs the parent the checkpoint was taken in
        base["linux"]["cgroupsPath"] = str(_dict(archive.get("linux")).get("cgroupsPath") or "")
    new = specs.rewrite_for_restore(
        base,
        rootfs=rootfs,
        netns=netns,
        cgroups_path=specs.cgroups_path(cid, root),
        bundle=bundle,
        cid=cid,
        key=specs.root_key(root),
    )
    for mount in new.get("mounts", []):
        dest = str(mount.get("destination", ""))
        if provided and dest in provided and mount.get("type") == "bind":
            mount["source"] = str(provided[dest])
    cgroups.refuse_existing(str(new["linux"]["cgroupsPath"]), f"container {cid[:12]}")
    return new


def privileges(archive: Mapping[str, Any], images: ImageDir | None) -> CheckResult:
    """`amber archive check`'s privileges row (the images too when `images` holds the tasks')."""
    try:
        violations = list(confine(archive, reference_spec(archive)).violations)
        if images is not None and images.has("pstree.img"):
            violations += image_violations(images, archive)
    except ArchiveError as exc:
        return CheckResult("privileges", CheckStatus.FAIL, exc.message, exc.hint or "")
    return privileges_row(violations)


__all__ = [
    "check_images",
    "check_spec",
    "image_violations",
    "privileges",
    "privileges_row",
    "reference_spec",
    "refuse",
    "refuse_shared_pid",
    "restore_spec",
]
