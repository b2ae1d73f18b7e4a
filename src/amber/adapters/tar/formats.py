"""The compressions amber knows and the levels it writes with: names and ranges only, no codec.

Choosing a compression, checking a level and a local checkpoint need these, not zstd, gzip nor
the tar engine: `compression` (which imports the codecs) re-exports them.
"""

from __future__ import annotations

import enum

from amber.errors import UsageError


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"  # read only
    XZ = "xz"  # read only

    @classmethod
    def parse(cls, value: str) -> Compression:
        """A compression the user may choose for writing (podman's three), case-insensitive.

        Raises UsageError for anything else."""
        low = value.lower()
        if low in WRITABLE:
            return cls(low)
        raise UsageError(
            f'selected compression algorithm ("{value}") not supported. Please select one from: gzip, none, zstd',
            hint="zstd is the default and the fastest",
        )


WRITABLE = frozenset({Compression.NONE, Compression.GZIP, Compression.ZSTD})
# The levels a writer may use, and its default (README "Speed": chosen from measured size and time).
LEVELS = {Compression.ZSTD: range(1, 20), Compression.GZIP: range(1, 10)}
DEFAULT_LEVELS = {Compression.ZSTD: 3, Compression.GZIP: 6}  # zstd: tar/zstd_writer; gzip 6: Go's default, podman's


def check_level(kind: Compression, level: int | None, source: str = "--compress-level") -> None:
    """Raises UsageError when `level` (given by `source`) is not one `kind` can write with."""
    if level is None:
        return
    levels = LEVELS.get(kind)
    if levels is None:
        raise UsageError(
            f"{source} {level}: {kind} archives have no compression level",
            hint="leave out the level, or use --compress zstd or gzip",
        )
    if level not in levels:
        raise UsageError(
            f"{source} {level} is out of range for {kind}",
            hint=f"give {levels.start} to {levels.stop - 1} (default {DEFAULT_LEVELS[kind]})",
        )
