"""The results: samples to rows (medians, ratios, archive sizes, peak RSS), the issue's targets per
row, and each target once over the whole run (worst value, met or not). bench/report.py renders them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from cells import SHAPES, Cell, Sample
from harness import MIB
from report import op_rank

# Each target once, in the order of the summary table: goal id -> what the issue asks.
GOALS = {
    "small": "small containers (busybox, httpd): every command <= 1.0 x podman",
    "m64": "64 MiB zstd checkpoint+export and import+restore <= 0.6 x podman each",
    "g1_checkpoint": "1 GiB zstd checkpoint+export <= 0.33 x podman",
    "g1_restore": "1 GiB zstd import+restore <= 0.28 x podman",
    "g1_none": "1 GiB uncompressed checkpoint+export and import+restore <= 0.6 x podman",
    "rootfs": "rootfs diff (2 GiB of files) zstd checkpoint+export and import+restore <= 0.4 x podman",
    "size": "zstd archive at the default level <= 1.1 x podman's size",
    "rss": "peak RSS of amber, every checkpoint and restore <= 100 MiB",
    "refuse": "wrong-runtime refusal, whole command <= 0.3 s",
    "refuse_work": "wrong-runtime refusal, archive work <= 50 ms",
    "show": "archive show <= 0.3 s",
}
RSS_LIMIT_MIB = 100.0


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _row(op: str, cell: Cell, amber: list[Sample], podman: list[Sample]) -> dict[str, Any]:
    a = _median([s.seconds for s in amber])
    p = _median([s.seconds for s in podman])
    a_mib = _median([s.archive_bytes / MIB for s in amber if s.archive_bytes])
    p_mib = _median([s.archive_bytes / MIB for s in podman if s.archive_bytes])
    compress = op.partition("_")[2]
    return {
        "op": op, "shape": cell.shape, "mib": cell.mib, "kind": cell.kind, "runtime": cell.runtime,
        "level": int(compress[4:]) if compress[4:].isdigit() else None,
        "amber_s": a, "podman_s": p, "ratio": _ratio(a, p),
        "amber_n": len(amber), "podman_n": len(podman),
        "amber_rss_mib": max(s.rss_kib for s in amber) / 1024 if amber else None,
        "amber_rss_tree_mib": max(s.rss_tree_kib for s in amber) / 1024 if amber else None,
        "podman_rss_mib": max(s.rss_kib for s in podman) / 1024 if podman else None,
        "amber_runtime_s": _median([s.runtime_seconds for s in amber if s.runtime_seconds is not None]),
        "podman_runtime_s": _median([s.runtime_seconds for s in podman if s.runtime_seconds is not None]),
        "amber_archive_work_s": _median([s.archive_work_seconds for s in amber
                                         if s.archive_work_seconds is not None]),
        "amber_head_bytes_read": max((s.head_bytes_read or 0 for s in amber), default=None),
        "amber_archive_mib": a_mib, "podman_archive_mib": p_mib, "size_ratio": _ratio(a_mib, p_mib),
        "podman_from": None,
    }  # fmt: skip


def _podman_reference(rows: list[dict[str, Any]]) -> None:
    """Level cells run amber alone: their podman figures are the memory cell's zstd ones (same
    size, data and runtime, same run), which podman makes at its only level."""
    memory = {(r["op"], r["mib"], r["kind"], r["runtime"]): r for r in rows if r["shape"] == "memory"}
    for r in rows:
        if r["shape"] != "level":
            continue
        ref = memory.get((r["op"].split("_")[0] + "_zstd", r["mib"], r["kind"], r["runtime"]))
        if ref is None or ref["podman_s"] is None:
            continue
        r["podman_s"], r["podman_archive_mib"] = ref["podman_s"], ref["podman_archive_mib"]
        r["ratio"] = _ratio(r["amber_s"], r["podman_s"])
        r["size_ratio"] = _ratio(r["amber_archive_mib"], r["podman_archive_mib"])
        r["podman_from"] = f"{r['mib']}MiB/{r['kind']}/{r['runtime']}"


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per (op, cell): medians per engine, the ratio, archive sizes, amber's peak RSS, targets."""
    groups: dict[tuple[str, Cell], dict[str, list[Sample]]] = {}
    for s in samples:
        groups.setdefault((s.op, s.cell), {}).setdefault(s.engine, []).append(s)
    rows = [_row(op, cell, by.get("amber", []), by.get("podman", [])) for (op, cell), by in groups.items()]
    rows.sort(key=lambda r: (SHAPES.index(r["shape"]), op_rank(r["op"]), r["mib"], r["kind"], r["runtime"]))
    _podman_reference(rows)
    for row in rows:
        row["targets"] = evaluate(row)
    return rows


def _target(goal: str, text: str, value: float | None, limit: float) -> dict[str, Any]:
    return {"goal": goal, "target": text, "value": value, "limit": limit,
            "met": None if value is None else value <= limit}  # fmt: skip


def _ratio_goal(row: dict[str, Any]) -> tuple[str, float] | None:
    """The issue's time ratio target for this row, if it has one: (goal, limit)."""
    op, mib, shape = row["op"], row["mib"], row["shape"]
    if shape == "small":
        return "small", 1.0
    if shape == "rootfs" and op in ("checkpoint_zstd", "restore_zstd"):
        return "rootfs", 0.4
    if shape != "memory":
        return None
    if mib <= 64 and op in ("checkpoint_zstd", "restore_zstd"):
        return "m64", 0.6
    if mib >= 1024 and op == "checkpoint_zstd":
        return "g1_checkpoint", 0.33
    if mib >= 1024 and op == "restore_zstd":
        return "g1_restore", 0.28
    if mib >= 1024 and op in ("checkpoint_none", "restore_none"):
        return "g1_none", 0.6
    return None


def evaluate(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that apply to this row: goal, text, value, limit, met (None: not measurable)."""
    out: list[dict[str, Any]] = []
    op, shape = row["op"], row["shape"]
    goal = _ratio_goal(row)
    if goal is not None:
        out.append(_target(goal[0], f"<= {goal[1]} x podman", row["ratio"], goal[1]))
    if op == "checkpoint_zstd" and shape in ("memory", "rootfs"):
        out.append(_target("size", "archive <= 1.1 x podman's", row["size_ratio"], 1.1))
    if shape != "small" and op.startswith(("checkpoint_", "restore_")):
        out.append(_target("rss", f"amber RSS <= {RSS_LIMIT_MIB:.0f} MiB", row["amber_rss_mib"], RSS_LIMIT_MIB))
    if op.startswith("refuse_"):
        out.append(_target("refuse", "<= 0.3 s", row["amber_s"], 0.3))
        out.append(_target("refuse_work", "archive work <= 50 ms", row["amber_archive_work_s"], 0.05))
    if op.startswith("show_"):
        out.append(_target("show", "<= 0.3 s", row["amber_s"], 0.3))
    return out


def target_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, one each: the worst value measured, and whether it holds in every row
    (None: not measured in this run, or some row could not be measured)."""
    out = []
    for goal, text in GOALS.items():
        found = [t for r in rows for t in r["targets"] if t["goal"] == goal]
        values = [t["value"] for t in found if t["value"] is not None]
        met = None if not found or any(t["met"] is None for t in found) else all(t["met"] for t in found)
        unit = "MiB" if goal == "rss" else ("s" if goal in ("refuse", "refuse_work", "show") else "x")
        out.append({"goal": goal, "target": text, "worst": max(values) if values else None, "unit": unit,
                    "met": met, "measured": len(values), "of": len(found)})  # fmt: skip
    return out
