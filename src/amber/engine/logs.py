"""Reading conmon's k8s-file logs: `<time> <stream> <P|F> <text>` per line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogLine:
    time: str
    stream: str  # stdout | stderr
    text: str  # a whole line, partial (P) records joined


def parse_lines(lines: Iterator[str]) -> Iterator[LogLine]:
    pending: dict[str, str] = {}
    for raw in lines:
        parts = raw.rstrip("\n").split(" ", 3)
        if len(parts) < 3:
            continue
        stamp, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) > 3 else ""
        if tag == "P":
            pending[stream] = pending.get(stream, "") + text
            continue
        yield LogLine(stamp, stream, pending.pop(stream, "") + text)


def read_log(path: Path) -> Iterator[LogLine]:
    if not path.is_file():
        return
    with path.open(errors="replace") as f:
        yield from parse_lines(iter(f))


def follow_log(path: Path, running: Callable[[], bool], poll: float = 0.1) -> Iterator[LogLine]:
    """Yield log lines as they are written, until the container stops and the log is drained."""
    while not path.exists():
        if not running():
            return
        time.sleep(poll)
    with path.open(errors="replace") as f:
        buf = ""
        pending: list[str] = []
        while True:
            chunk = f.readline()
            if chunk:
                buf += chunk
                if buf.endswith("\n"):
                    pending.append(buf)
                    buf = ""
                    continue
                continue
            if pending:
                yield from parse_lines(iter(pending))
                pending = []
            if not running():
                rest = f.read()
                if rest or buf:
                    yield from parse_lines(iter((buf + rest).splitlines(keepends=True)))
                return
            time.sleep(poll)
