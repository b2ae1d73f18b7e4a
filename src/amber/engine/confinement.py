"""A restored container's power is amber's, never the archive's: the spec.

`confine(archive, amber)` takes an archive's spec.dump and the spec amber itself generates for the
container (engine/spec.py `generate`) and builds the EFFECTIVE spec: capabilities, namespaces,
seccomp, masked and read-only paths, devices, no_new_privs, rlimits, sysctls and mounts as amber
gives them. The archive informs only what a user could have asked amber for (args, env, cwd,
user, hostname, annotations, terminal); a stricter seccomp profile and resource limits are kept.
Everything else the archive asks for is a `Violation` (field, what it asks, what amber allows).

Pure. The same for the credentials CRIU recorded for each task: engine/task_credentials.py; the
checks restore and `amber archive check` make with both (refusal, exit 6, unless
`--trust-archive`): engine/privilege_checks.py.
"""

from __future__ import annotations

import copy
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
# Kernel file systems amber mounts itself (its source is amber's, never the archive's).
KERNEL_MOUNTS = {"proc": "proc", "sysfs": "sysfs", "tmpfs": "tmpfs", "devpts": "devpts", "mqueue": "mqueue"}
CGROUP_MOUNTS = ("cgroup", "cgroup2")
READ_ONLY_KINDS = ("sysfs", "cgroup", "cgroup2")
PROPAGATION_DENIED = ("shared", "rshared")
# Namespaces stricter than amber's set that an archive may keep (podman uses cgroupns on v2).
EXTRA_NAMESPACES = ("cgroup",)
# Sysctls other engines set by default and amber drops without complaint (namespaced, harmless).
ENGINE_SYSCTLS = ("net.ipv4.ping_group_range",)
# Leaves of containers' cgroups (amber's, podman's): a restored container never hangs inside one.
CONTAINER_CGROUPS = ("amber-", "libpod-")
RESOURCE_LIMITS = ("pids", "memory", "cpu")  # limits an archive may keep (only ever stricter)
# Annotations the runtimes or CRIU act on: a CRIU config file (runc), a seccomp receiver socket,
# the host's groups kept (crun)... each a handle on the host.
RUNTIME_ANNOTATIONS = ("org.criu.", "run.oci.", "io.kubernetes.cri-o.")
PROCESS_FROM_ARCHIVE = ("args", "env", "cwd", "user", "terminal", "consoleSize")
PROCESS_CHECKED = ("capabilities", "rlimits", "noNewPrivileges", "apparmorProfile", "selinuxLabel", "oomScoreAdj")
LINUX_CHECKED = (
    "namespaces",
    "cgroupsPath",
    "resources",
    "maskedPaths",
    "readonlyPaths",
    "seccomp",
    "sysctl",
    "devices",
    "mountLabel",
    "rootfsPropagation",
)
TOP_KEYS = ("ociVersion", "process", "root", "hostname", "domainname", "mounts", "annotations", "linux", "hooks")


@dataclass(frozen=True)
class Violation:
    """One thing an archive asks for that amber does not allow."""

    field: str  # spec path (process.capabilities.bounding) or task field (pid 1: cap_eff)
    asked: str
    allowed: str

    def __str__(self) -> str:
        return f"{self.field}: the archive asks for {self.asked}; amber allows {self.allowed}"


@dataclass(frozen=True)
class Confined:
    """The effective spec and what the archive asked for beyond it."""

    spec: dict[str, Any]
    violations: tuple[Violation, ...]


def _short(value: Any, limit: int = 600) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list | tuple | set | frozenset) else repr(value)
    text = text or "(none)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(value: Any) -> list[str]:
    return [str(x) for x in value] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# ===================================== the spec ==============================================
def confine(archive: Mapping[str, Any], amber: Mapping[str, Any]) -> Confined:
    """The effective spec for a container restored from `archive`, given amber's own `amber`.

    Pure: neither argument is changed. The result keeps amber's root, cgroupsPath and network
    namespace path (the caller rewrites them for the new container).
    """
    out: list[Violation] = []
    spec = copy.deepcopy(dict(amber))
    for key in archive:
        if key not in TOP_KEYS:
            out.append(Violation(key, f"{key} = {_short(archive[key])}", "no such field"))
    if archive.get("hooks"):
        out.append(Violation("hooks", _short(sorted(_dict(archive["hooks"]))), "no hooks (they run on the host)"))
    for key in ("ociVersion", "hostname", "domainname"):
        if isinstance(archive.get(key), str):
            spec[key] = archive[key]
    root = _dict(archive.get("root"))
    if root.get("readonly") is True:
        spec["root"]["readonly"] = True
    spec["process"] = _process(_dict(archive.get("process")), _dict(amber.get("process")), out)
    spec["annotations"] = _annotations(_dict(archive.get("annotations")), _dict(amber.get("annotations")), out)
    spec["linux"] = _linux(_dict(archive.get("linux")), _dict(amber.get("linux")), out)
    spec["mounts"] = _mounts(archive.get("mounts"), amber.get("mounts"), out)
    return Confined(spec, tuple(out))


def _process(archive: dict[str, Any], amber: dict[str, Any], out: list[Violation]) -> dict[str, Any]:
    proc = copy.deepcopy(amber)
    for key in PROCESS_FROM_ARCHIVE:
        if key in archive:
            proc[key] = copy.deepcopy(archive[key])
    for key in archive:
        if key not in PROCESS_FROM_ARCHIVE and key not in PROCESS_CHECKED:
            out.append(Violation(f"process.{key}", _short(archive[key]), "amber's default (not set)"))
    user = archive.get("user", {})
    extra = _dict(user).get("additionalGids") or []
    ids = [_dict(user).get(k, 0) for k in ("uid", "gid")] + (extra if isinstance(extra, list) else [None])
    if not isinstance(user, dict) or not all(_is_id(i) for i in ids):
        out.append(Violation("process.user", _short(user), "numeric uid, gid and additionalGids"))
        proc["user"] = copy.deepcopy(amber.get("user"))
    caps, mine = _dict(archive.get("capabilities")), _dict(amber.get("capabilities"))
    for name in CAP_SETS:
        extra = sorted(set(_names(caps.get(name))) - set(_names(mine.get(name))))
        if extra:
            out.append(Violation(f"process.capabilities.{name}", _short(extra), _short(_names(mine.get(name)))))
    score = archive.get("oomScoreAdj")
    if isinstance(score, int) and not isinstance(score, bool) and score >= 0:
        proc["oomScoreAdj"] = score
    elif score is not None:
        out.append(Violation("process.oomScoreAdj", _short(score), "0 or more"))
    proc["rlimits"] = _rlimits(archive.get("rlimits"), amber.get("rlimits"), out)
    return proc


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32


# Limits whose default the kernel derives from the host's memory (max_threads / 2): an archive
# from a bigger host records more than this one gives, so they are lowered to this host's.
HOST_SIZED = frozenset({"RLIMIT_NPROC", "RLIMIT_SIGPENDING"})


def _rlimits(archive: Any, amber: Any, out: list[Violation]) -> list[dict[str, Any]]:
    """The archive's limits when no higher than amber's (or than what the container inherits);
    the host-sized ones above it lowered to it."""
    mine = {str(r.get("type")): r for r in amber or [] if isinstance(r, dict)}
    kept: dict[str, dict[str, Any]] = dict(mine)
    for r in archive if isinstance(archive, list) else []:
        kind = str(_dict(r).get("type", ""))
        ceiling = _rlimit_ceiling(kind, mine.get(kind))
        hard, soft = _dict(r).get("hard"), _dict(r).get("soft")
        if not (isinstance(hard, int) and isinstance(soft, int)) or not 0 <= soft <= hard:
            ceiling = None
        lower = kind in HOST_SIZED and ceiling is not None and ceiling >= 0
        if lower and isinstance(hard, int) and isinstance(soft, int) and ceiling is not None and hard > ceiling:
            hard, soft = ceiling, min(soft, ceiling)  # this host's size, not the archive's host's
        if ceiling is None or (ceiling >= 0 and isinstance(hard, int) and hard > ceiling):
            out.append(Violation(f"process.rlimits.{kind}", _short(r), f"hard <= {_limit_text(ceiling)}"))
            continue
        kept[kind] = {"type": kind, "hard": hard, "soft": soft}
    return list(kept.values())


def _rlimit_ceiling(kind: str, mine: dict[str, Any] | None) -> int | None:
    """The highest hard limit allowed (-1: unlimited); None for an unknown limit."""
    if mine is not None:
        return int(mine.get("hard", 0))
    number = getattr(resource, kind, None)
    if not kind.startswith("RLIMIT_") or not isinstance(number, int):
        return None
    hard = resource.getrlimit(number)[1]
    return -1 if hard == resource.RLIM_INFINITY else hard


def _limit_text(ceiling: int | None) -> str:
    return "a known limit" if ceiling is None else "unlimited" if ceiling < 0 else str(ceiling)


def _annotations(archive: dict[str, Any], amber: dict[str, Any], out: list[Violation]) -> dict[str, Any]:
    kept = {}
    for key, value in archive.items():
        if key.startswith(RUNTIME_ANNOTATIONS):
            out.append(Violation(f"annotations.{key}", _short(value), "no runtime or CRIU annotations"))
        elif isinstance(value, str):
            kept[key] = value
    return {**kept, **amber}


def _linux(archive: dict[str, Any], amber: dict[str, Any], out: list[Violation]) -> dict[str, Any]:
    linux = copy.deepcopy(amber)
    for key in archive:
        if key not in LINUX_CHECKED:
            out.append(Violation(f"linux.{key}", _short(archive[key]), "not set"))
    _namespaces(archive.get("namespaces"), amber.get("namespaces"), linux, out)
    parent = str(archive.get("cgroupsPath") or "").split(":", 1)[0].rsplit("/", 1)[0]
    if any(part == ".." or part.startswith(CONTAINER_CGROUPS) for part in parent.split("/")):
        out.append(Violation("linux.cgroupsPath", _short(archive["cgroupsPath"]), "a parent outside any container's"))
    for key in ("maskedPaths", "readonlyPaths"):
        paths = _names(amber.get(key))
        linux[key] = paths + [p for p in dict.fromkeys(_names(archive.get(key))) if p not in paths]
    seccomp = archive.get("seccomp")
    if isinstance(seccomp, dict) and seccomp:
        if seccomp.get("listenerPath") or seccomp.get("listenerMetadata"):
            out.append(Violation("linux.seccomp.listenerPath", _short(seccomp.get("listenerPath")), "no listener"))
        linux["seccomp"] = copy.deepcopy(seccomp)  # any profile is stricter than amber's (none)
    sysctl = {k: v for k, v in _dict(archive.get("sysctl")).items() if k not in ENGINE_SYSCTLS}
    if sysctl:
        out.append(Violation("linux.sysctl", _short(sorted(sysctl)), "no sysctls"))
    if archive.get("devices"):
        out.append(Violation("linux.devices", _short(archive["devices"]), "no device nodes"))
    prop = archive.get("rootfsPropagation")
    if prop not in (None, "", "private", "rprivate", "slave", "rslave"):
        out.append(Violation("linux.rootfsPropagation", _short(prop), "private or slave"))
    resources = _dict(archive.get("resources"))
    devices = resources.get("devices")
    allowed = [d for d in devices if _dict(d).get("allow")] if isinstance(devices, list) else [devices]
    allowed = [d for d in allowed if d is not None]
    if allowed:
        out.append(Violation("linux.resources.devices", _short(allowed), "every device denied"))
    for key in resources:
        if key in RESOURCE_LIMITS:
            linux.setdefault("resources", {})[key] = copy.deepcopy(resources[key])
        elif key != "devices":
            out.append(Violation(f"linux.resources.{key}", _short(resources[key]), "not set"))
    return linux


REPLACED = frozenset({"network", "ipc", "uts"})  # namespace types whose joined paths restore drops


def _namespaces(archive: Any, amber: Any, linux: dict[str, Any], out: list[Violation]) -> None:
    asked = [_dict(ns) for ns in archive or []] if isinstance(archive, list) else []
    mine = [_dict(ns) for ns in amber or []]
    kinds = {str(ns.get("type")) for ns in asked}
    missing = sorted({str(ns.get("type")) for ns in mine} - kinds)
    if missing:
        out.append(Violation("linux.namespaces", f"no {_short(missing)} namespace", "all of amber's"))
    extra = sorted(kinds - {str(ns.get("type")) for ns in mine} - set(EXTRA_NAMESPACES))
    if extra:
        out.append(Violation("linux.namespaces", f"a {_short(extra)} namespace", _short(sorted(kinds - set(extra)))))
    # A joined network, ipc or uts namespace (a Kubernetes pod's sandbox shares them) is replaced
    # by a new one of the container's own: asking for it asks for nothing. Others are refused.
    joined = [
        f"{ns.get('type')}={ns['path']}" for ns in asked if ns.get("path") and str(ns.get("type")) not in REPLACED
    ]
    if joined:
        out.append(Violation("linux.namespaces.path", _short(joined), "new namespaces"))
    linux["namespaces"] = copy.deepcopy(mine) + [
        {"type": str(ns.get("type"))} for ns in asked if ns.get("type") in EXTRA_NAMESPACES and ns not in mine
    ]


def _mounts(archive: Any, amber: Any, out: list[Violation]) -> list[dict[str, Any]]:
    """Every destination the archive has (CRIU needs them), each of a kind amber makes."""
    mine = {str(m.get("destination")): m for m in amber or [] if isinstance(m, dict)}
    kept: list[dict[str, Any]] = []
    for m in archive if isinstance(archive, list) else []:
        m = _dict(m)
        dest, kind = str(m.get("destination", "")), str(m.get("type", ""))
        options = _names(m.get("options"))
        bind = kind == "bind" or "bind" in options or "rbind" in options
        if not dest.startswith("/") or ".." in dest.split("/"):
            out.append(Violation("mounts", f"destination {dest!r}", "absolute destinations"))
            continue
        if not bind and kind not in KERNEL_MOUNTS and kind not in CGROUP_MOUNTS:
            out.append(Violation(f"mounts[{dest}]", f"a {kind or 'typeless'} mount of {m.get('source')}", _KINDS))
            continue
        if bind or kind in CGROUP_MOUNTS:
            source = "" if bind else kind  # binds get amber's source in the bundle (spec.py)
        else:
            source = str(mine[dest]["source"]) if dest in mine else KERNEL_MOUNTS[kind]
        options = [o for o in options if o not in PROPAGATION_DENIED and o not in ("suid", "dev")]
        options += [o for o in ("nosuid",) if o not in options]
        if kind in READ_ONLY_KINDS:
            options = [o for o in options if o != "rw"] + ([] if "ro" in options else ["ro"])
        kept.append({"destination": dest, "type": "bind" if bind else kind, "source": source, "options": options})
    return kept


_KINDS = "proc, sysfs, tmpfs, devpts, mqueue, cgroup and binds amber provides"


__all__ = ["CAP_SETS", "HOST_SIZED", "Confined", "Violation", "confine"]
