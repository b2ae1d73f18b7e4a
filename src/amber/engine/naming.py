"""What network and volume names may be (as podman's). Their paths are in amber.layout.Layout."""

from __future__ import annotations

import re

from amber.errors import UsageError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")  # 64: an anonymous volume's hex name


def check_name(name: str) -> None:
    """Raises UsageError unless `name` is a valid network or volume name (as podman's)."""
    if not NAME_RE.match(name):
        raise UsageError(
            f"invalid name {name!r}", hint="use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
