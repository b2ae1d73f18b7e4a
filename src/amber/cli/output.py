"""Printing helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from amber.errors import AmberError


def print_error(exc: AmberError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    for line in exc.details:
        print(f"  {line}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, header: bool = True) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    if header:
        print(fmt.format(*headers).rstrip())
    for row in rows:
        print(fmt.format(*row).rstrip())


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=4))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
