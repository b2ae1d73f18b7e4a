"""A restored container's tasks get amber's credentials, never more: CRIU's records checked.

`credential_violations` compares the credentials and seccomp state CRIU recorded for each task
and thread (adapters/criu_images.py `read_credentials`) with the effective spec
(engine/confinement.py `confine`): capabilities, uids and gids, securebits, no_new_privs and the
seccomp mode. Pure; engine/privilege_checks.py refuses what it finds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from amber.adapters.criu_images import Credentials
from amber.engine.confinement import Violation, _dict, _is_id, _names, _short

# Linux capability numbers (include/uapi/linux/capability.h), for the CRIU bitmasks.
CAP_NUMBERS = {
    name: i
    for i, name in enumerate(
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
        "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
        "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
        "PERFMON BPF CHECKPOINT_RESTORE".split()
    )
}


def cap_mask(names: Iterable[str]) -> int:
    """The kernel bitmask of capability names (CAP_X); unknown names count for nothing."""
    mask = 0
    for name in names:
        number = CAP_NUMBERS.get(name.removeprefix("CAP_"))
        if number is not None:
            mask |= 1 << number
    return mask


def cap_names(mask: int) -> list[str]:
    return [f"CAP_{n}" for n, i in CAP_NUMBERS.items() if mask >> i & 1] + (
        [f"unknown bits {mask >> len(CAP_NUMBERS):#x}<<{len(CAP_NUMBERS)}"] if mask >> len(CAP_NUMBERS) else []
    )


def credential_violations(
    tasks: Sequence[Credentials], spec: Mapping[str, Any], *, strict_nnp: bool
) -> list[Violation]:
    """Where a task's (or thread's) credentials or seccomp state exceed the effective `spec`.

    uids and gids must be the process user's unless that user is root (root may switch).
    `strict_nnp`: the archive's own spec asked for no_new_privs, so a task without it is forged
    (podman's default is without; capabilities bound what a task can gain by execve).
    """
    proc = _dict(spec.get("process"))
    user, caps = _dict(proc.get("user")), _dict(proc.get("capabilities"))
    uid, gid = (user.get(k, 0) if _is_id(user.get(k, 0)) else 0 for k in ("uid", "gid"))
    extra = user.get("additionalGids")
    gids = {gid, *(g for g in extra if _is_id(g))} if isinstance(extra, list) else {gid}
    sets = {
        "cap_bnd": "bounding",
        "cap_eff": "effective",
        "cap_prm": "permitted",
        "cap_inh": "inheritable",
        "cap_amb": "ambient",
    }
    filtered = bool(_dict(_dict(spec.get("linux")).get("seccomp")))
    out: list[Violation] = []
    for t in tasks:
        where = f"pid {t.pid}" + (f" thread {t.tid}" if t.tid != t.pid else "")
        for field, oci in sets.items():
            allowed = cap_mask(_names(caps.get(oci)))
            extra = getattr(t, field) & ~allowed
            if extra:
                out.append(Violation(f"{where}: {field}", _short(cap_names(extra)), _short(cap_names(allowed))))
        if uid != 0 and set(t.uids) != {uid}:
            out.append(Violation(f"{where}: uids", _short(t.uids), f"uid {uid}"))
        if uid != 0 and (set(t.gids) - gids or set(t.groups) - gids):
            out.append(Violation(f"{where}: gids", _short([*t.gids, *t.groups]), _short(sorted(gids))))
        if t.secbits and not cap_mask(["CAP_SETPCAP"]) & cap_mask(_names(caps.get("bounding"))):
            out.append(Violation(f"{where}: secbits", hex(t.secbits), "0"))
        if strict_nnp and not t.no_new_privs:
            out.append(Violation(f"{where}: no_new_privs", "0", "1 (the archive's spec sets noNewPrivileges)"))
        if filtered and t.seccomp_mode != "filter":
            out.append(Violation(f"{where}: seccomp_mode", t.seccomp_mode, "filter (the spec has a profile)"))
    return out


__all__ = ["CAP_NUMBERS", "cap_mask", "cap_names", "credential_violations"]
