"""`-u/--user USER[:GROUP]` as podman reads it: names looked up in the container's /etc/passwd
and /etc/group, numbers taken as they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.errors import UsageError


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            out["additionalGids"] = list(self.additional_gids)
        return out


def _table(roots: Sequence[Path], name: str) -> list[list[str]]:
    """The rows of etc/NAME in the first of `roots` (top layer first) that has it."""
    text = ""
    for root in roots:
        path = root / "etc" / name
        if path.is_file() or path.is_symlink():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                text = ""
            break
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(value: str, roots: Sequence[Path]) -> User:
    """The uid and gid `value` (USER[:GROUP], names or numbers) means in the root file system
    made of `roots` (the top layer first). Raises UsageError for a name the container does not have."""
    user, _, group = value.partition(":")
    if not user:
        raise UsageError(f"invalid user '{value}'", hint="give USER[:GROUP], names or numbers: -u 1000:1000")
    passwd = _table(roots, "passwd")
    if user.isdigit():
        uid = int(user)
        row = next((r for r in passwd if len(r) > 3 and r[2] == user), None)
        gid = int(row[3]) if row and row[3].isdigit() else 0
    else:
        row = next((r for r in passwd if len(r) > 3 and r[0] == user), None)
        if row is None or not row[2].isdigit():
            raise UsageError(
                f"no user '{user}' in the container's /etc/passwd", hint="give a uid instead: -u 1000:1000"
            )
        uid, gid = int(row[2]), int(row[3]) if row[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((r for r in _table(roots, "group") if len(r) > 2 and r[0] == group), None)
            if grow is None or not grow[2].isdigit():
                raise UsageError(
                    f"no group '{group}' in the container's /etc/group", hint="give a gid instead: -u 1000:1000"
                )
            gid = int(grow[2])
    return User(uid, gid)
