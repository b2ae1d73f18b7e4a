"""The results: samples to rows (medians, ratios, peak RSS), the issue's targets per row and
overall, and the Markdown printed at the end of a run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from cells import Cell, Sample
from harness import MIB

# The operations, in table order: key -> label.
OPS = {
    "checkpoint_zstd": "checkpoint --export (zstd)",
    "restore_zstd": "restore --import (zstd)",
    "checkpoint_none": "checkpoint --export (none)",
    "restore_none": "restore --import (none)",
    "refuse_zstd": "refused restore, wrong --runtime (zstd)",
    "refuse_none": "refused restore, wrong --runtime (none)",
    "show_zstd": "archive show (zstd)",
    "show_none": "archive show (none)",
}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per (op, cell): medians per engine, the ratio, amber's peak RSS."""
    groups: dict[tuple[str, Cell], dict[str, list[Sample]]] = {}
    for s in samples:
        groups.setdefault((s.op, s.cell), {}).setdefault(s.engine, []).append(s)
    rows = []
    order = list(OPS)
    for (op, cell), by_engine in sorted(
        groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1].mib, kv[0][1].kind, kv[0][1].runtime)
    ):
        amber = by_engine.get("amber", [])
        podman = by_engine.get("podman", [])
        a = _median([s.seconds for s in amber])
        p = _median([s.seconds for s in podman])
        row: dict[str, Any] = {
            "op": op, "mib": cell.mib, "kind": cell.kind, "runtime": cell.runtime,
            "amber_s": a, "podman_s": p, "ratio": (a / p) if a is not None and p else None,
            "amber_n": len(amber), "podman_n": len(podman),
            "amber_rss_mib": max((s.rss_kib for s in amber), default=0) / 1024 if amber else None,
            "amber_rss_tree_mib": max((s.rss_tree_kib for s in amber), default=0) / 1024 if amber else None,
            "podman_rss_mib": max((s.rss_kib for s in podman), default=0) / 1024 if podman else None,
            "amber_runtime_s": _median([s.runtime_seconds for s in amber if s.runtime_seconds is not None]),
            "podman_runtime_s": _median([s.runtime_seconds for s in podman if s.runtime_seconds is not None]),
            "amber_archive_work_s": _median([s.archive_work_seconds for s in amber
                                             if s.archive_work_seconds is not None]),
            "amber_head_bytes_read": max((s.head_bytes_read or 0 for s in amber), default=None),
            "amber_archive_mib": _median([s.archive_bytes / MIB for s in amber if s.archive_bytes]),
            "podman_archive_mib": _median([s.archive_bytes / MIB for s in podman if s.archive_bytes]),
        }  # fmt: skip
        row["targets"] = evaluate(row)
        rows.append(row)
    return rows


def evaluate(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that apply to this row: text, value, limit, met (None: not measurable)."""
    out: list[dict[str, Any]] = []
    op, mib = row["op"], row["mib"]

    def ratio_target(limit: float) -> None:
        r = row["ratio"]
        out.append(
            {"target": f"<= {limit} x podman", "value": r, "limit": limit, "met": None if r is None else r <= limit}
        )

    if mib >= 1024 and op in ("checkpoint_zstd", "restore_zstd"):
        ratio_target(0.5)
    if mib >= 1024 and op in ("checkpoint_none", "restore_none"):
        ratio_target(0.7)
    if mib >= 1024 and op.startswith(("checkpoint_", "restore_")):
        rss = row["amber_rss_mib"]
        out.append(
            {
                "target": "amber RSS <= 100 MiB",
                "value": rss,
                "limit": 100.0,
                "met": None if rss is None else rss <= 100.0,
            }
        )
    if op.startswith("refuse_"):
        a = row["amber_s"]
        out.append({"target": "<= 0.3 s", "value": a, "limit": 0.3, "met": None if a is None else a <= 0.3})
        w = row["amber_archive_work_s"]
        out.append(
            {"target": "archive work <= 50 ms", "value": w, "limit": 0.05, "met": None if w is None else w <= 0.05}
        )
    if op.startswith("show_"):
        a = row["amber_s"]
        out.append({"target": "<= 0.3 s", "value": a, "limit": 0.3, "met": None if a is None else a <= 0.3})
    return out


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**NO**")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| operation | MiB | data | runtime | amber s | podman s | amber/podman | amber RSS MiB | target | met? |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        targets = r["targets"] or [{"target": "", "met": None, "value": None}]
        target = "; ".join(t["target"] for t in targets) or "-"
        met = "; ".join(_met(t["met"]) for t in targets) if r["targets"] else "-"
        extra = ""
        if r["amber_archive_work_s"] is not None:
            extra = f" (read_head {r['amber_archive_work_s'] * 1000:.1f} ms)"
        lines.append(
            f"| {OPS.get(r['op'], r['op'])} | {r['mib']} | {r['kind']} | {r['runtime']} "
            f"| {_fmt(r['amber_s'])}{extra} | {_fmt(r['podman_s'])} | {_fmt(r['ratio'], digits=2)} "
            f"| {_fmt(r['amber_rss_mib'], digits=1)} | {target} | {met} |"
        )
    return "\n".join(lines)


def target_summary(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The issue's targets, one line each: the worst value measured and whether it holds."""
    specs = [
        ("checkpoint+export 1 GiB zstd <= 0.5 x podman", ("checkpoint_zstd",), "x podman"),
        ("import+restore 1 GiB zstd <= 0.5 x podman", ("restore_zstd",), "x podman"),
        ("uncompressed export and import (1 GiB) <= 0.7 x podman", ("checkpoint_none", "restore_none"), "x podman"),
        ("wrong-runtime refusal, whole command <= 0.3 s", ("refuse_zstd", "refuse_none"), "<= 0.3 s"),
        ("wrong-runtime refusal, archive work <= 50 ms", ("refuse_zstd", "refuse_none"), "archive work"),
        ("archive show <= 0.3 s", ("show_zstd", "show_none"), "<= 0.3 s"),
        (
            "peak RSS of amber, 1 GiB export/import <= 100 MiB",
            ("checkpoint_zstd", "restore_zstd", "checkpoint_none", "restore_none"),
            "RSS",
        ),
    ]
    out = []
    lines = ["| target | worst measured | met? |", "| --- | ---: | --- |"]
    for text, ops, match in specs:
        found = [t for r in rows if r["op"] in ops for t in r["targets"] if match in t["target"]]
        values = [t["value"] for t in found if t["value"] is not None]
        flags = [t["met"] for t in found]
        met = None if not found or any(f is None for f in flags) else all(flags)
        worst = max(values) if values else None
        unit = " MiB" if match == "RSS" else ("" if match == "x podman" else " s")
        out.append({"target": text, "worst": worst, "met": met, "measured": len(values), "of": len(found)})
        lines.append(f"| {text} | {_fmt(worst, unit)} | {_met(met)} |")
    return "\n".join(lines), out
