"""Container records on disk: one directory per container, its record written atomically."""

from __future__ import annotations

import contextlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from amber.adapters.state import atomic_write_json, list_dir, remove_tree
from amber.config import Layout
from amber.errors import ConflictError, NotFoundError, UsageError
from amber.models import Container


def now() -> str:
    """The time now as amber records it: RFC 3339, UTC, microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_ADJECTIVES = (
    "amber",
    "brave",
    "calm",
    "eager",
    "fond",
    "gentle",
    "keen",
    "lucid",
    "merry",
    "quiet",
    "swift",
    "tidy",
    "vivid",
    "witty",
    "zesty",
    "bold",
)
_NOUNS = (
    "otter",
    "heron",
    "lynx",
    "panda",
    "raven",
    "tern",
    "wren",
    "yak",
    "koala",
    "marten",
    "newt",
    "orca",
    "quail",
    "stoat",
    "tapir",
    "vole",
)


class ContainerStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def record_path(self, cid: str) -> Path:
        return self.layout.container(cid).record

    def save(self, c: Container) -> None:
        atomic_write_json(self.record_path(c.id), c.to_dict())

    def all(self) -> list[Container]:
        out: list[Container] = []
        for d in list_dir(self.layout.containers):  # PreconditionError: a file, or not root
            rec = self.record_path(d.name)
            if not rec.is_file():
                continue
            try:
                out.append(Container.from_dict(json.loads(rec.read_text())))
            except (ValueError, KeyError, TypeError):
                continue  # a record cut by a crash: `amber ps` skips it, `amber rm` can remove it
        return sorted(out, key=lambda c: c.created)

    def get(self, ref: str) -> Container:
        containers = self.all()
        for c in containers:
            if c.name == ref or c.id == ref:
                return c
        if len(ref) >= 4:
            matches = [c for c in containers if c.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(
                    f"container id prefix '{ref}' is ambiguous", hint="give more characters of the id, or the name"
                )
        raise NotFoundError(f"no such container: {ref}", hint="amber ps -a lists the containers")

    def find(self, ref: str) -> Container | None:
        try:
            return self.get(ref)
        except (NotFoundError, UsageError):
            return None

    def check_name_free(self, name: str) -> None:
        for c in self.all():
            if c.name == name:
                raise ConflictError(
                    f"the container name '{name}' is already in use by {c.id[:12]}",
                    hint=f"choose another name, or remove that container: amber rm -f {name}",
                )

    def new_id(self) -> str:
        return secrets.token_hex(32)

    def new_name(self) -> str:
        taken = {c.name for c in self.all()}
        for _ in range(100):
            name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
            if name not in taken:
                return name
        return f"amber_{secrets.token_hex(4)}"

    def delete(self, cid: str) -> None:
        with contextlib.suppress(OSError):
            remove_tree(self.layout.container_dir(cid))  # any depth: the container's upper dir is in it


def validate_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", name):
        raise UsageError(
            f"invalid container name '{name}'",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return name
