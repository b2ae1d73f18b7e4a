"""`amber archive check`: can this host restore a checkpoint archive? (`amber restore` asks too.)

Each check gives ok, warn or fail with a reason and, when something is to be done, a hint:
runtime, CRIU version, CPU, kernel, image, name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from amber.adapters import checkpoint_archive as archive
from amber.adapters import criu, runtime
from amber.adapters.criu_images import ImageDir, read_inventory
from amber.adapters.podman_format import CPUINFO_IMG, ConfigDump
from amber.adapters.run import QUERY_TIMEOUT, find_tool, run
from amber.engine import privilege_checks, restore_net
from amber.engine.archive_models import CheckResult, CheckStatus
from amber.engine.networks import NetworkService
from amber.engine.runtime_rule import compatible, recorded_kind, select_runtime
from amber.errors import AmberError, NotFoundError, UsageError, exit_status
from amber.models import Container, Image

OK, WARN, FAIL = CheckStatus.OK, CheckStatus.WARN, CheckStatus.FAIL
IMG_VERSION = 2  # CRIU's images v1.1


class Images(Protocol):
    def get(self, ref: str) -> Image: ...


class Store(Protocol):
    def find(self, ref: str) -> Container | None: ...


class Containers(Protocol):
    @property
    def store(self) -> Store: ...


def run_checks(
    head: archive.ArchiveHead,
    extracted: Path | None,
    images: Images,
    containers: Containers,
    *,
    runtime: str | None,
    name: str | None,
    kernel: bool = True,
) -> list[CheckResult]:
    """`extracted`: where inventory.img and cpuinfo.img were extracted (None: skip the CPU check)."""
    results = [check_runtime(head, runtime), check_criu(head, extracted)]
    if extracted is not None:
        results.append(check_cpu(extracted))
    if kernel:
        results.append(check_kernel())
    results += [check_image(head, images), check_name(head, containers, name)]
    networks = getattr(containers, "networks", None)
    if isinstance(networks, NetworkService):  # the container service's (a fake has none)
        results.append(restore_net.check_network(head, networks))
    results.append(
        privilege_checks.privileges(
            head.spec, ImageDir(extracted / archive.CHECKPOINT_DIR, str(head.path)) if extracted else None
        )
    )
    return results


def check_runtime(head: archive.ArchiveHead, requested: str | None) -> CheckResult:
    recorded = head.config_dump.runtime or ""
    if recorded and requested:
        kind = recorded_kind(recorded)
        try:
            wanted = requested if requested in runtime.KNOWN_RUNTIMES else runtime.resolve(requested).kind
        except AmberError as exc:
            return CheckResult("runtime", FAIL, exc.message, exc.hint or "")
        if not compatible(kind, wanted):
            return CheckResult(
                "runtime",
                FAIL,
                f"archive was created with runtime '{recorded}' and cannot be restored with runtime '{requested}'",
                f"leave out --runtime, or give {kind}",
            )
    try:
        info = select_runtime(recorded, requested, str(head.path))
    except AmberError as exc:
        return CheckResult("runtime", FAIL, exc.message, exc.hint or "")
    return CheckResult(
        "runtime",
        OK,
        f"archive was created with runtime '{recorded}'; {info.kind} {info.version} ({info.path}) will restore it",
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".") if x.isdigit())


def check_criu(head: archive.ArchiveHead, extracted: Path | None) -> CheckResult:
    try:
        host = criu.version()
    except AmberError as exc:
        return CheckResult("criu-version", FAIL, exc.message, exc.hint or "")
    host_text = ".".join(map(str, host)) or "unknown"
    if extracted is not None:
        try:
            inv = read_inventory(ImageDir(extracted / archive.CHECKPOINT_DIR, str(head.path)))
        except AmberError as exc:
            return CheckResult("criu-version", FAIL, exc.message, exc.hint or "")
        if inv is None:
            return CheckResult(
                "criu-version",
                FAIL,
                f"checkpoint archive {head.path} has no {archive.INVENTORY}",
                "the archive is incomplete or a pre-checkpoint; make a new checkpoint",
            )
        if int(inv.get("img_version", IMG_VERSION)) != IMG_VERSION:
            return CheckResult(
                "criu-version",
                FAIL,
                f"the images have format version {inv.get('img_version')}, CRIU {host_text} "
                f"reads version {IMG_VERSION}",
                "restore it with the CRIU that wrote it",
            )
    manifest = head.amber_manifest
    recorded = (manifest.criu_version if manifest else None) or head.config_dump.criu_version
    if not host:  # not "older": a CRIU that cannot say its version (broken, hung, not CRIU)
        return CheckResult(
            "criu-version",
            FAIL,
            "this host's CRIU did not report its version (criu --version gave no Version: line)",
            "check that CRIU works on this host: criu --version, criu check",
        )
    if not _version_tuple(recorded):
        return CheckResult(
            "criu-version", OK, f"the archive does not record which CRIU wrote it; this host has CRIU {host_text}"
        )
    if host < _version_tuple(recorded):
        return CheckResult(
            "criu-version",
            FAIL,
            f"the archive was written by CRIU {recorded}, this host has the older {host_text}",
            f"install CRIU {recorded} or newer",
        )
    return CheckResult("criu-version", OK, f"written by CRIU {recorded}; this host has CRIU {host_text}")


def check_cpu(extracted: Path) -> CheckResult:
    images = extracted / archive.CHECKPOINT_DIR
    if not (images / CPUINFO_IMG).is_file():
        return CheckResult(
            "cpu",
            OK,
            "the archive records no CPU features (no cpuinfo.img); CRIU compares the FPU state when restoring",
        )
    if os.geteuid() != 0:
        return CheckResult("cpu", WARN, "cannot compare CPU features without root", "run the check as root")
    try:
        find_tool("criu", "check CPU features")
        returncode, output = criu.check_cpuinfo(images)  # asked once per archive's CPU (probe_cache)
    except AmberError as exc:  # not installed, or timed out: the message names criu
        return CheckResult("cpu", FAIL, exc.message, exc.hint or "")
    except OSError as exc:
        return CheckResult("cpu", FAIL, f"cannot read {CPUINFO_IMG}: {exc.strerror or exc}", "check the archive")
    if returncode < 0 or returncode > 1:  # killed, or an error of criu's own: not the CPU's
        return CheckResult(
            "cpu", FAIL, f'"criu cpuinfo check" {exit_status(returncode)}', "see `criu cpuinfo check` on this host"
        )
    if returncode != 0:
        lines = [ln for ln in output.splitlines() if ln.strip()]
        return CheckResult(
            "cpu",
            FAIL,
            "this CPU lacks features the checkpointed processes used" + (f": {lines[-1].strip()}" if lines else ""),
            "restore it on a host with the same CPU",
        )
    return CheckResult("cpu", OK, "this CPU has the features the archive records")


def check_kernel() -> CheckResult:
    if os.geteuid() != 0:
        return CheckResult("kernel", WARN, "cannot run `criu check` without root", "run the check as root")
    try:
        res = run([find_tool("criu", "check kernel features"), "check"], check=False, timeout=QUERY_TIMEOUT)
    except AmberError as exc:
        return CheckResult("kernel", FAIL, exc.message, exc.hint or "")
    out = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    if res.returncode != 0:
        return CheckResult(
            "kernel",
            FAIL,
            "`criu check` fails on this kernel" + (f": {out[-1]}" if out else ""),
            "restore needs a kernel with CRIU support (see `criu check --all`)",
        )
    return CheckResult("kernel", OK, f"criu check: {out[-1] if out else 'ok'}")


def find_image(images: Images, config: ConfigDump) -> Image | None:
    """The image the archive's container ran (by name, else by ID), None when it is not here.

    Raises the image store's AmberError for anything but "no such image" (a damaged record)."""
    for ref in (*config.image_refs, config.amber_image_id):
        if ref:
            with contextlib.suppress(NotFoundError, UsageError):
                return images.get(ref)
    return None


def check_image(head: archive.ArchiveHead, images: Images) -> CheckResult:
    name, image_id = head.config_dump.image_refs
    try:
        image = find_image(images, head.config_dump)
    except AmberError as exc:
        return CheckResult("image", FAIL, exc.message, exc.hint or "")
    if image is not None:
        return CheckResult("image", OK, f"image {image.name} ({image.id[:12]}) is present")
    shown = name or image_id or "(none recorded)"
    if image_id and name:
        shown = f"{name} (ID {image_id[:12]})"
    return CheckResult(
        "image",
        FAIL,
        f"image {shown} is not present",
        f"import it first: amber image import ROOTFS.tar {name or 'NAME'}",
    )


def check_name(head: archive.ArchiveHead, containers: Containers, name: str | None) -> CheckResult:
    target = name or head.config_dump.name or ""
    if not target:
        return CheckResult(
            "name", FAIL, f"checkpoint archive {head.path} records no container name", "give one with --name"
        )
    other = containers.store.find(target)
    if other is None:
        return CheckResult("name", OK, f"the name '{target}' is free")
    status = FAIL if name else WARN
    return CheckResult(
        "name",
        status,
        f"the name '{target}' is used by container {other.id[:12]}",
        "restore it under another name with --name NEW_NAME",
    )


__all__ = ["Containers", "Images", "find_image", "run_checks"]
