"""Calling the tar engine the way the tests were written: keyword options instead of a Policy."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from amber.adapters.tar.extract import Policy, Symlinks, extract


def extract_names(
    source: IO[bytes] | tarfile.TarFile,
    dest: Path,
    *,
    archive_name: str,
    want: Callable[[str], bool] | None = None,
    rooted_symlinks: bool = False,
    **policy: Any,
) -> list[str]:
    """extract() with Policy(**policy); the names written."""
    symlinks = Symlinks.ROOTED if rooted_symlinks else Symlinks.CONTAINED
    done = extract(source, dest, Policy(symlinks=symlinks, **policy), archive=archive_name, want=want)
    return done.written
