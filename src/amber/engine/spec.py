"""The OCI runtime spec amber generates for a container, and the rewrite of a foreign one.

The spec records everything the checkpoint archive's spec.dump needs; it carries the annotation
`io.container.manager: libpod` so checkpointctl reads amber's archives as Podman's.
"""

from __future__ import annotations

import copy
import hashlib
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amber.layout import RESTORE_MOUNTS

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AUTOREMOVE_ANNOTATION = "io.podman.annotations.autoremove"  # podman: "TRUE" for a --rm container

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]


def generate(
    *,
    cid: str,
    hostname: str,
    rootfs: Path,
    args: Sequence[str],
    env: Sequence[str],
    cwd: str,
    netns: Path,
    cgroups_path: str,
    user: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    ipc_shareable: bool = False,
    auto_remove: bool = False,
) -> dict[str, Any]:
    """The OCI spec of a new container: `user` its process's (uid, gid), `resources` the
    memory/cpu/pids limits on top of the device rules; `ipc_shareable` marks its IPC namespace
    as one other containers may join (podman's --ipc shareable; still its own); `auto_remove`
    (--rm) is podman's autoremove annotation, so a restore from the archive keeps --rm."""
    caps = list(CAPABILITIES)
    annotations = {"io.container.manager": "libpod", "org.amber.container.id": cid}
    if ipc_shareable:
        annotations["org.amber.ipc"] = "shareable"
    if auto_remove:
        annotations[AUTOREMOVE_ANNOTATION] = "TRUE"
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": dict(user) if user else {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(env),
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [_nofile()],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": _mounts(),
        "annotations": annotations,
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": str(netns)},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}], **(resources or {})},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def _nofile() -> dict[str, Any]:
    """As many open files as this host lets us give (the runtime cannot raise the hard limit)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)
    return {"type": "RLIMIT_NOFILE", "hard": limit, "soft": limit}


def root_key(root: Path) -> str:
    """A short key for an amber root: two roots never share a container's cgroup."""
    return hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:8]


def cgroups_path(cid: str, root: Path) -> str:
    """The cgroup of container `cid` of the amber root `root` (cgroupfs notation)."""
    return f"/amber/amber-{root_key(root)}-{cid}"


def restore_cgroups_path(old: str, cid: str, default: str, key: str = "") -> str:
    """The restored container's cgroup: a new leaf under the parent the checkpoint was taken in.

    CRIU restores the tasks relative to the dumped cgroup tree; crun fails (`devices.deny`:
    Invalid argument) when the new cgroup hangs under another parent. The leaf carries `key`
    (the amber root's, `root_key`), so two roots restoring one archive get two cgroups.
    """
    if ":" in old:  # systemd notation, slice:prefix:name -> the slice as a cgroupfs parent
        parent = "/" + old.split(":", 1)[0]
    elif old.startswith("/") and old.count("/") >= 2:
        parent = old.rsplit("/", 1)[0]
    else:
        return default
    if ".." in parent.split("/"):
        return default
    return f"{parent}/amber-{key}-{cid}" if key else f"{parent}/amber-{cid}"


def merge_env(image_env: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Image env, then the user's -e K=V on top (same key replaced); PATH always present."""
    out: dict[str, str] = {}
    for item in [DEFAULT_PATH, *image_env, *extra]:
        key, _, _value = item.partition("=")
        out[key] = item
    return list(out.values())


# Mount destinations that an engine sets up from its own per-container files (podman's bundle
# files): on restore their sources are replaced with amber's own copies.
ENGINE_FILE_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv", "/var/run/.containerenv")


def rewrite_for_restore(
    spec: dict[str, Any],
    *,
    rootfs: Path,
    netns: Path,
    cgroups_path: str,
    bundle: Path,
    cid: str,
    key: str = "",
) -> dict[str, Any]:
    """Adapt a checkpointed container's spec (amber's or another engine's) to this host.

    Keeps every mount destination (CRIU needs the same mount tree) but points bind-mount sources
    that belonged to the old host's engine at files amber makes in the new bundle.
    """
    new = copy.deepcopy(spec)
    new.setdefault("root", {})["path"] = str(rootfs)
    linux = new.setdefault("linux", {})
    linux["cgroupsPath"] = restore_cgroups_path(str(linux.get("cgroupsPath") or ""), cid, cgroups_path, key)
    namespaces = [ns for ns in linux.get("namespaces", []) if isinstance(ns, dict)]
    for ns in namespaces:
        if ns.get("type") == "network":
            ns["path"] = str(netns)
        elif "path" in ns and ns.get("type") != "network":
            ns.pop("path")  # the old host's namespace files mean nothing here
    linux["namespaces"] = namespaces
    new.pop("hooks", None)  # the old engine's hooks are not installed here
    process = new.get("process", {})
    if isinstance(process, dict):
        process.pop("apparmorProfile", None)
        process.pop("selinuxLabel", None)
    linux.pop("mountLabel", None)
    files = bundle / RESTORE_MOUNTS
    mounts = []
    for mount in new.get("mounts", []):
        if not isinstance(mount, dict):
            continue
        mounts.append(_rebind(mount, files, cid))
    new["mounts"] = mounts
    new.setdefault("annotations", {})["org.amber.container.id"] = cid
    return new


def _rebind(mount: dict[str, Any], files: Path, cid: str) -> dict[str, Any]:
    """Point a bind mount at a file or directory amber makes in the new bundle.

    A bind mount's source is a path on the host that wrote the archive: it means nothing here,
    and taken from an untrusted archive it could expose any host path to the container. CRIU
    needs only the mount point, so every bind gets a fresh, empty (or engine-made) source.
    """
    options = mount.get("options") or []
    if mount.get("type") != "bind" and "bind" not in options and "rbind" not in options:
        return mount
    dest = str(mount.get("destination", ""))
    files.mkdir(parents=True, exist_ok=True)
    replacement = files / bind_source_name(dest)
    if dest in ENGINE_FILE_MOUNTS:
        if not replacement.exists():
            replacement.write_text(_file_content(dest, cid))
    else:
        replacement.mkdir(parents=True, exist_ok=True)
    return {**mount, "source": str(replacement)}


def bind_source_name(dest: str) -> str:
    """The file name of the fresh source for a bind at `dest`: one name per destination, never
    shared (`/a/b` and `/a_b`, `/etc/hosts` and `/etc_hosts` differ), never a path of its own."""
    text = dest.strip("/")
    if not text:
        return "root"
    name = text.replace("%", "%25").replace("/", "%2F")
    if name in ("root", ".", ".."):
        name = "%" + name  # "%" appears in no other name without a hex pair after it
    if len(name.encode()) > 200:  # too long for one file name: keep it unique with a digest
        name = f"{name[:100]}%{hashlib.sha256(text.encode()).hexdigest()}"
    return name


def _file_content(dest: str, cid: str) -> str:
    if dest == "/etc/hosts":
        return f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{cid[:12]}\n"
    if dest == "/etc/hostname":
        return f"{cid[:12]}\n"
    if dest == "/etc/resolv.conf":
        return "nameserver 127.0.0.1\n"
    if dest.endswith(".containerenv"):
        return 'engine="amber"\n'
    return ""
