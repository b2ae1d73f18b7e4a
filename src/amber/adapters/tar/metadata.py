"""A member's metadata, applied in this order: owner, mode (chown clears set-id bits), xattrs
(those the Policy allows; ones the filesystem refuses are logged), then times."""

from __future__ import annotations

import errno
import logging
import os
import tarfile

from amber.adapters.tar.policy import Policy

log = logging.getLogger("amber.tar")

XATTR_PAX_PREFIX = "SCHILY.xattr."


def apply_meta(policy: Policy, target: int | str, ti: tarfile.TarInfo, archive: str, member: str) -> None:
    """Of an fd, or a /proc/self/fd path, that is the member. Raises OSError."""
    mode = ti.mode & 0o7777
    if policy.keep_owner:
        os.chown(target, ti.uid, ti.gid)
    else:
        mode &= 0o1777  # no set-id bits on files we do not give their owner back
    os.chmod(target, mode)
    set_xattrs(policy, target, ti, archive, member, follow=True)
    os.utime(target, ns=times_ns(ti))


def set_xattrs(
    policy: Policy, target: int | str, ti: tarfile.TarInfo, archive: str, member: str, *, follow: bool
) -> None:
    """The member's SCHILY.xattr.* records the policy allows. Raises OSError when out of space."""
    for key, value in ti.pax_headers.items():
        if not key.startswith(XATTR_PAX_PREFIX):
            continue
        attr = key[len(XATTR_PAX_PREFIX) :]
        if not policy.xattr_allowed(attr):
            log.debug("%s: member %s: dropping xattr %s", archive, member, attr)
            continue
        try:
            os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=follow)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            log.warning("%s: member %s: could not set xattr %s: %s", archive, member, attr, exc.strerror)


def times_ns(ti: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns; headers.header_problem has checked both are finite and in range."""
    mtime = int(float(ti.mtime) * 1_000_000_000)
    atime = ti.pax_headers.get("atime")
    return (int(float(atime) * 1_000_000_000) if atime else mtime), mtime
