"""bench/migrate.py's arithmetic: downtime from the workload's tick record, medians per cell, the
issue's targets, and the Markdown table (no I/O but reading a tick file; unit-tested with fakes).

Times are CLOCK_REALTIME nanoseconds (time.time_ns() there). A sample is one move: {"runtime",
"mib", "way", "rep"} and either {"downtime_s", "frozen_s", "total_s"} or {"error"} (with
"unavailable": true when the way is not built in this amber).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from report import _met, _num  # bench/report.py: the same cells as the Speed table's

# The ways a container moves, in table order: amber migrate's modes, then the manual ways.
MODES = ("copy", "page-server", "lazy")
MANUAL = ("podman-manual", "amber-manual")
WAYS = (*MODES, *MANUAL)
TARGET_MIB = 1024
FLAT_LIMIT_S = 0.25  # "nearly flat": lazy downtime may grow by at most this from the smallest size to the largest

# amber migrate's last line: "moved in 3.21 s; frozen 1.90 s (until it ran on the destination)"
_FROZEN = re.compile(r"frozen ([0-9]+(?:\.[0-9]+)?) s")
# How an amber that has not built a mode refuses it (the usage error, or argparse's choices).
_UNAVAILABLE = ("not built yet", "invalid choice")


def read_ticks(path: Path) -> list[int]:
    """The workload's /tmp/ticks as CLOCK_REALTIME nanoseconds: each line is "MONOTONIC REALTIME"
    and the last field is taken (CRIU's restore puts the process in a time namespace that hides
    most of the stop from its monotonic clock). A torn last line (read while the workload
    appends) is dropped; missing file: []."""
    try:
        text = path.read_text()
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # the part after the last newline is still being written
    return [int(line.split()[-1]) for line in lines if line.split() and line.split()[-1].isdigit()]


def downtime(ticks: Sequence[int], start_ns: int, end_ns: int) -> float | None:
    """The largest gap between two ticks whose first tick lies within [start_ns, end_ns] (the
    move's command ran then), in seconds: the time the program did not run. None when no tick
    after the window's last one was recorded (the gap is not closed yet) or none fell in it."""
    best: int | None = None
    for before, after in zip(ticks, ticks[1:], strict=False):
        if start_ns <= before <= end_ns:
            gap = after - before
            best = gap if best is None or gap > best else best
    return None if best is None else best / 1e9


def tick_period(ticks: Sequence[int], before_ns: int) -> float | None:
    """The median gap of the ticks before `before_ns`, in seconds: how regular the ticker ran
    (10 ms on an idle machine; more when the machine is loaded)."""
    early = [t for t in ticks if t < before_ns]
    gaps = [b - a for a, b in zip(early, early[1:], strict=False)]
    return statistics.median(gaps) / 1e9 if gaps else None


def frozen_from_report(stderr: str) -> float | None:
    """amber migrate's own freeze-to-running figure from its last line."""
    found = _FROZEN.findall(stderr)
    return float(found[-1]) if found else None


def unavailable(stderr: str) -> bool:
    """Whether amber refused the mode as not built (not a failure of the move itself)."""
    return any(text in stderr for text in _UNAVAILABLE)


def median(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def summarize(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per runtime x MiB x way: medians of the good samples, the errors' messages, and
    total / podman-manual's total for amber's modes (the same runtime and size)."""
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for s in samples:
        cells.setdefault((s["runtime"], s["mib"], s["way"]), []).append(s)
    rows: list[dict[str, Any]] = []
    for (runtime, mib, way), group in cells.items():
        good = [s for s in group if "error" not in s]
        rows.append(
            {
                "runtime": runtime,
                "mib": mib,
                "way": way,
                "n": len(good),
                "downtime_s": median(s.get("downtime_s") for s in good),
                "frozen_s": median(s.get("frozen_s") for s in good),
                "total_s": median(s.get("total_s") for s in good),
                "unavailable": next((str(s["error"]) for s in group if s.get("unavailable")), None),
                "errors": [str(s["error"]) for s in group if "error" in s and not s.get("unavailable")],
            }
        )
    totals = {(r["runtime"], r["mib"]): r["total_s"] for r in rows if r["way"] == "podman-manual"}
    for r in rows:
        podman = totals.get((r["runtime"], r["mib"]))
        mine = r["total_s"]
        r["total_vs_podman"] = mine / podman if r["way"] in MODES and mine is not None and podman else None
    order = {w: i for i, w in enumerate(WAYS)}
    rows.sort(key=lambda r: (r["runtime"], r["mib"], order.get(r["way"], len(order))))
    return rows


def _row(rows: Sequence[dict[str, Any]], runtime: str, mib: int, way: str) -> dict[str, Any] | None:
    return next((r for r in rows if (r["runtime"], r["mib"], r["way"]) == (runtime, mib, way)), None)


def _value(row: dict[str, Any] | None, key: str) -> float | None:
    value = row.get(key) if row is not None else None
    return float(value) if isinstance(value, int | float) else None


def _limit(target: str, runtime: str, value: float | None, limit: float, unit: str) -> dict[str, Any]:
    met = None if value is None else value <= limit
    return {"target": target, "runtime": runtime, "value": value, "limit": limit, "unit": unit, "met": met}


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets at 1 GiB, per runtime: page-server downtime <= 2.0 s, lazy downtime
    <= 0.5 s and nearly flat over the sizes measured (largest - smallest median <= FLAT_LIMIT_S,
    at least two sizes), copy's total <= 0.6 x podman's manual way. `met` None: not measured."""
    out: list[dict[str, Any]] = []
    for runtime in sorted({r["runtime"] for r in rows}):
        ps = _row(rows, runtime, TARGET_MIB, "page-server")
        out.append(_limit("page-server downtime at 1 GiB <= 2.0 s", runtime, _value(ps, "downtime_s"), 2.0, "s"))
        lazy = _row(rows, runtime, TARGET_MIB, "lazy")
        out.append(_limit("lazy downtime at 1 GiB <= 0.5 s", runtime, _value(lazy, "downtime_s"), 0.5, "s"))
        by_size = sorted(
            (r["mib"], r["downtime_s"])
            for r in rows
            if r["runtime"] == runtime and r["way"] == "lazy" and r["downtime_s"] is not None
        )
        spread = max(d for _, d in by_size) - min(d for _, d in by_size) if len(by_size) >= 2 else None
        span = f"{by_size[0][0]} -> {by_size[-1][0]} MiB" if len(by_size) >= 2 else "64 MiB -> 4 GiB"
        out.append(
            _limit(f"lazy downtime nearly flat {span} (spread <= {FLAT_LIMIT_S} s)", runtime, spread, FLAT_LIMIT_S, "s")
        )
        copy = _row(rows, runtime, TARGET_MIB, "copy")
        out.append(
            _limit("copy total at 1 GiB <= 0.6 x podman manual", runtime, _value(copy, "total_vs_podman"), 0.6, "x")
        )
    return out


def _label(r: dict[str, Any]) -> str:
    if r["unavailable"] and not r["n"]:
        return f"{r['way']} ({r['unavailable']})"
    return str(r["way"])


def markdown(data: dict[str, Any]) -> str:
    """The result file as Markdown: the run's header line, one row per runtime x MiB x way, then
    the targets (measured value, met or not)."""
    v = data.get("versions", {})
    command = " ".join(str(a) for a in data.get("command", [])) or "bench/migrate.py"
    podman = data.get("podman") or {}
    manual = (
        f"; podman manual: checkpoint --export --compress {podman.get('compress', '?')}, copy "
        f"{podman.get('copy', '?')}, restore --import. {podman.get('hosts', '')}"
        if podman
        else "."
    )
    lines = [
        f"Run {data.get('when', '?')} on {v.get('cpus', '?')} cores (load average {data.get('load', '?')}), "
        f"kernel {v.get('kernel', '?')}, {v.get('criu', 'CRIU ?')}, {v.get('podman', 'podman absent')}; "
        f"command `{command}`. Medians in seconds. Downtime: the largest gap of the workload's "
        f"{data.get('tick_ms', 10)} ms ticker; amber's frozen: migrate's own freeze-to-running report; "
        f"total: the command's wall time (the manual ways: their steps' sum){manual}".rstrip(),
        "",
        "| runtime | MiB | way | downtime s | amber's frozen s | total s | total / podman manual | runs |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data.get("rows", []):
        lines.append(
            f"| {r['runtime']} | {r['mib']} | {_label(r)} | {_num(r['downtime_s'])} | {_num(r['frozen_s'])} "
            f"| {_num(r['total_s'])} | {_num(r['total_vs_podman'])} | {r['n']} |"
        )
    goals = data.get("targets") or []
    if goals:
        lines += ["", "| target | runtime | measured | met? |", "| --- | --- | ---: | --- |"]
        for t in goals:
            unit = " x" if t["unit"] == "x" else " s"
            value = "n/a" if t["value"] is None else _num(t["value"]) + unit
            lines.append(f"| {t['target']} | {t['runtime']} | {value} | {_met(t['met'])} |")
    errors = [e for r in data.get("rows", []) for e in r.get("errors", [])]
    if errors:
        lines += ["", f"The run recorded {len(errors)} error(s); see `errors` in the rows of the result file."]
    return "\n".join(lines)
