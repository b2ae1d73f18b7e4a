"""Member-name rules shared by every tar reader: what a hostile name may not do, and how to print it.

A member name is refused when it holds a NUL byte, is longer than MAX_NAME bytes, is absolute, has
a `..` component or a component longer than MAX_COMPONENT bytes. Accepted names are normalised
to their components: `./a//b/` is ("a", "b"), `.` and `./` are () (the archive's own root).
"""

from __future__ import annotations

import os

MAX_NAME = 4096  # PATH_MAX
MAX_COMPONENT = 255  # NAME_MAX
MAX_SHOWN = 200


def problem(name: str, *, what: str = "name", components: bool = True) -> tuple[str, ...] | str:
    """The components of `name`, or a string telling why it is refused ("its name is ...").

    `what` names the thing in the reason ("name", "hard link target"); `components=False` skips
    the per-component length rule (a name that only serves as a key, never created on disk).
    """
    raw = os.fsencode(name)
    if b"\0" in raw:
        return f"its {what} contains a NUL byte"
    if len(raw) > MAX_NAME:
        return f"its {what} is {len(raw)} bytes long (the limit is {MAX_NAME})"
    if name.startswith("/"):
        return f"its {what} is an absolute path"
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        return f"its {what} has a '..' component"
    if components:
        longest = max((len(os.fsencode(p)) for p in parts), default=0)
        if longest > MAX_COMPONENT:
            return f"a component of its {what} is {longest} bytes long (the limit is {MAX_COMPONENT})"
    return parts


def normalize_name(name: str) -> tuple[str, ...] | str:
    """The components of a member name, or a string telling why the name is refused."""
    return problem(name)


def split_name(name: str, *, what: str = "name") -> tuple[str, ...]:
    """Validated components of a name (`./a//b/` -> ("a", "b")). Raises ValueError saying why not.

    Component lengths are not checked: the name is a key inside an archive, not created on disk.
    """
    parts = problem(name, what=what, components=False)
    if isinstance(parts, str):
        raise ValueError(parts)
    return parts


def shown(name: str, limit: int = MAX_SHOWN) -> str:
    """A hostile name fit for a message: quoted (control bytes escaped), shortened when over-long."""
    return repr(name if len(name) <= limit else f"{name[: limit - 40]}...{name[-30:]}")


def bad_target(target: str) -> str | None:
    """Why a symlink target is unusable whatever it points to (empty, NUL, over-long), or None."""
    if not target or "\0" in target:
        return "its target is empty or contains a NUL byte"
    if len(os.fsencode(target)) > MAX_NAME:
        return f"its target is longer than {MAX_NAME} bytes"
    return None


def symlink_escape(parts: tuple[str, ...], target: str, *, rooted: bool) -> str | None:
    """Why a symlink at `parts` pointing to `target` leaves the destination, or None.

    A relative target's `..` may only lead it (`../../lib/x`, never `a/../..`) and never climb
    above the destination. `rooted`: absolute targets are container paths (chroot semantics), and
    `..` after a name is allowed, since links are never followed while extracting.
    """
    if (bad := bad_target(target)) is not None:
        return bad
    if target.startswith("/"):
        return None if rooted else f"its target {shown(target)} is an absolute path"
    depth = len(parts) - 1
    climbing = True
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not climbing and not rooted:
                return f"its target {shown(target)} has a '..' after a name"
            depth -= 1
            if depth < 0:
                return f"its target {shown(target)} points outside the destination"
        else:
            climbing = False
            depth += 1
    return None
