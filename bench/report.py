"""The README's "Speed" table, made from a benchmark result file (bench/results/latest.json).

    .venv/bin/python bench/run.py --report            # print the table
    .venv/bin/python bench/run.py --report --readme   # and write it into README.md

The table sits in README.md between BEGIN and END below; everything else in the README is left as
it is, so re-running the benchmark and then `--report --readme` is the whole update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench-report:begin (bench/run.py --report --readme writes this part) -->"
END = "<!-- bench-report:end -->"

# Operations in table order. Archive operations are "<base>_<compression>": zstd, none, or zstdN
# (zstd at --compress-level N, level cells); small-container commands have no compression.
BASES = {
    "checkpoint": "checkpoint --export",
    "restore": "restore --import",
    "roundtrip": "round trip (checkpoint+export, import+restore)",
    "refuse": "refused wrong --runtime",
    "show": "archive show (checkpointctl show)",
}
SMALL = {
    "run": "run -d",
    "exec": "exec",
    "ps": "ps -a",
    "inspect": "inspect",
    "checkpoint": "checkpoint (local)",
    "restore": "restore (local)",
    "stop": "stop -t 0",
    "rm": "rm",
}


def _compress_rank(compress: str) -> int:
    return {"zstd": 0, "none": 1}.get(compress, 2 + int(compress[4:]) if compress[4:].isdigit() else 99)


def op_rank(op: str) -> tuple[int, int]:
    """Sort key of an operation: archive operations by base then compression, then small commands."""
    base, _, compress = op.partition("_")
    if compress and base in BASES:
        return list(BASES).index(base), _compress_rank(compress)
    return len(BASES) + (list(SMALL).index(op) if op in SMALL else len(SMALL)), 0


def op_label(op: str) -> str:
    base, _, compress = op.partition("_")
    if compress and base in BASES:
        level = compress[4:]
        return f"{BASES[base]}, {'zstd -' + level if level.isdigit() else compress}"
    return SMALL.get(op, op)


class ReportError(Exception):
    """The result file is missing or is not a benchmark result (the message says which)."""


def load(path: Path) -> dict[str, Any]:
    """The result file's data. Raises ReportError when it is missing or malformed."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror} (run bench/run.py first)") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ReportError(f"{path} has no 'rows': not a bench/run.py result")
    return data


def _num(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def _met(flag: object) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**no**")


def _head(*columns: str) -> list[str]:
    """A Markdown table's two header lines; a column named ">..." is right-aligned."""
    names = [c.removeprefix(">") for c in columns]
    return [
        "| " + " | ".join(names) + " |",
        "| " + " | ".join("---:" if c[0] == ">" else "---" for c in columns) + " |",
    ]


def _sorted(rows: list[dict[str, Any]], shapes: tuple[str, ...]) -> list[dict[str, Any]]:
    mine = [r for r in rows if r.get("shape", "memory") in shapes]
    return sorted(mine, key=lambda r: (op_rank(str(r.get("op", ""))), r.get("mib", 0), r.get("kind", ""),
                                       r.get("runtime", "")))  # fmt: skip


def _verdict(items: list[tuple[str, object]]) -> str:
    """`yes` when every target holds, else the ones that do not (`**no**`) or cannot be told (`n/a`)."""
    if not items:
        return "-"
    if all(met is True for _, met in items):
        return "yes"
    no = [what for what, met in items if met is False]
    na = [what for what, met in items if met is None]
    return "; ".join(part for part in ("**no**: " + ", ".join(no) if no else "", "n/a: " + ", ".join(na) if na else "")
                     if part)  # fmt: skip


def _cell_label(r: dict[str, Any]) -> str:
    if r.get("shape") == "rootfs":
        return f"rootfs diff {r.get('mib', '?')} MiB"
    return f"{r.get('mib', '?')} MiB {r.get('kind', '?')}"


def _pair(r: dict[str, Any] | None) -> str:
    """amber / podman seconds and their ratio."""
    if r is None:
        return "-"
    ratio = r.get("ratio")
    return f"{_num(r.get('amber_s'))} / {_num(r.get('podman_s'))}" + (
        f" ({_num(ratio)})" if isinstance(ratio, int | float) else ""
    )


def _grouped(rows: list[dict[str, Any]], shapes: tuple[str, ...], with_compress: bool) -> list[dict[str, Any]]:
    """Rows of those shapes gathered per cell (and compression): {"first": row, base op: row, ...}."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in _sorted(rows, shapes):
        base, _, compress = str(r.get("op", "")).partition("_")
        key: tuple[Any, ...] = (shapes.index(r.get("shape", "memory")), r.get("mib", 0), r.get("kind", ""),
                                r.get("runtime", ""))  # fmt: skip
        if with_compress:
            key += (_compress_rank(compress),)
        group = groups.setdefault(key, {"first": r, "compress": compress})
        group[base if with_compress else r.get("op", "")] = r
    return [groups[k] for k in sorted(groups)]


def _targets(group: dict[str, Any], names: dict[str, str]) -> list[tuple[str, object]]:
    return [
        (f"{label} {t.get('target', '')}", t.get("met"))
        for key, label in names.items()
        for t in (group.get(key) or {}).get("targets") or []
    ]


def _archive_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per cell and compression: export, import and the round trip, archive sizes, RSS."""
    lines = _head(
        "cell",
        "runtime",
        "compression",
        ">checkpoint+export s, amber / podman (ratio)",
        ">import+restore s",
        ">round trip s",
        ">archive MiB, amber / podman",
        ">amber RSS MiB",
        "targets met?",
    )
    for g in _grouped(rows, ("memory", "rootfs"), with_compress=True):
        ck, rs = g.get("checkpoint"), g.get("restore")
        rss = [r.get("amber_rss_mib") for r in (ck, rs) if r is not None]
        sizes = "-" if ck is None else f"{_num(ck.get('amber_archive_mib'))} / {_num(ck.get('podman_archive_mib'))}"
        lines.append(
            f"| {_cell_label(g['first'])} | {g['first'].get('runtime', '?')} | {g['compress']} | {_pair(ck)} "
            f"| {_pair(rs)} | {_pair(g.get('roundtrip'))} | {sizes} "
            f"| {_num(max((v for v in rss if isinstance(v, int | float)), default=None), 1)} "
            f"| {_verdict(_targets(g, {'checkpoint': 'export', 'restore': 'import'}))} |"
        )
    return lines


def _checks_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per cell: the wrong-runtime refusal and `archive show`, which need not read the images."""
    lines = _head("cell", "runtime", ">refused wrong --runtime s, zstd: amber / podman", ">none",
                  ">archive show s (podman: checkpointctl show), zstd", ">none", ">read_head ms",
                  "targets met?")  # fmt: skip
    names = {"refuse_zstd": "refusal zstd", "refuse_none": "refusal none", "show_zstd": "show zstd",
             "show_none": "show none"}  # fmt: skip
    for g in _grouped(rows, ("memory", "rootfs"), with_compress=False):
        if not any(k in g for k in names):
            continue
        work = [r.get("amber_archive_work_s") for r in (g.get("refuse_zstd"), g.get("refuse_none")) if r]
        work_ms = max((w * 1000 for w in work if isinstance(w, int | float)), default=None)
        lines.append(
            f"| {_cell_label(g['first'])} | {g['first'].get('runtime', '?')} | "
            + " | ".join(_pair(g.get(k)) for k in names)
            + f" | {_num(work_ms, 1)} | {_verdict(_targets(g, names))} |"
        )
    return lines


def _small_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per command, one column per container and runtime."""
    mine = _sorted(rows, ("small",))
    columns = sorted({(str(r.get("kind", "")), str(r.get("runtime", ""))) for r in mine})
    lines = _head("command", *(f">{k} {rt}: amber / podman s (ratio)" for k, rt in columns), "met?")
    by = {(r.get("op"), r.get("kind"), r.get("runtime")): r for r in mine}
    for op in dict.fromkeys(r.get("op") for r in mine):
        cells = [by.get((op, k, rt)) for k, rt in columns]
        verdict = _verdict([(f"{k} {rt}", t.get("met")) for (k, rt), r in zip(columns, cells, strict=True) if r
                            for t in r.get("targets") or []])  # fmt: skip
        lines.append(f"| {op_label(str(op))} | " + " | ".join(_pair(r) for r in cells) + f" | {verdict} |")
    return lines


def _level_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per level: checkpoint and restore times, archive size, podman's (its only level)."""
    lines = _head(">zstd level", ">MiB", "data", "runtime", ">checkpoint+export s", ">import+restore s",
                  ">archive MiB", ">podman s, archive MiB", ">size vs podman")  # fmt: skip
    by: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in _sorted(rows, ("level",)):
        key = (r.get("mib", 0), r.get("kind", ""), r.get("runtime", ""), r.get("level") or 0)
        by.setdefault(key, {})[str(r.get("op", "")).split("_")[0]] = r
    for (mib, kind, runtime, level), ops in sorted(by.items()):
        ck, rs = ops.get("checkpoint", {}), ops.get("restore", {})
        lines.append(
            f"| {level} | {mib} | {kind} | {runtime} | {_num(ck.get('amber_s'))} | {_num(rs.get('amber_s'))} "
            f"| {_num(ck.get('amber_archive_mib'))} | {_num(ck.get('podman_s'))}, "
            f"{_num(ck.get('podman_archive_mib'))} | {_num(ck.get('size_ratio'))} |"
        )
    return lines


def table(data: dict[str, Any]) -> str:
    """Markdown: the run's header line, then a table per kind of cell (checkpoint and restore by
    memory size and rootfs diff; small-container commands; compression levels), then the targets
    (worst value, met or not)."""
    versions = data.get("versions", {})
    command = " ".join(str(a) for a in data.get("command", [])) or "bench/run.py"
    total = data.get("total_seconds")
    took = f" in {total / 60:.1f} min" if isinstance(total, int | float) else ""
    lines = [
        f"Run {data.get('when', '?')}{took} on {versions.get('cpus', '?')} cores, kernel "
        f"{versions.get('kernel', '?')}, {versions.get('criu', 'CRIU ?')}, {versions.get('podman', 'podman absent')}; "
        f"command `{command}`. Medians in seconds, podman measured in the same run; ratio below 1: amber is faster.",
    ]
    rows = data["rows"]
    shapes = {r.get("shape", "memory") for r in rows}
    if shapes & {"memory", "rootfs"}:
        lines += ["", *_archive_table(rows)]
        checks = _checks_table(rows)
        if len(checks) > 2:
            lines += ["", "Reading an archive's head only: refusing the wrong runtime, `archive show`:", "", *checks]
    if "small" in shapes:
        lines += ["", "Small containers, one command at a time:", "", *_small_table(rows)]
    if "level" in shapes:
        lines += ["", "Compression levels (amber; podman at its only level, same memory cell):", "",
                  *_level_table(rows)]  # fmt: skip
    summary = data.get("targets") or []
    if summary:
        lines += ["", *_head("target", ">worst measured", "met?")]
        lines += [f"| {t.get('target', '?')} | {_worst(t)} | {_met(t.get('met'))} |" for t in summary]
    errors = data.get("errors") or []
    if errors:
        lines += ["", f"The run recorded {len(errors)} error(s); see `errors` in the result file."]
    return "\n".join(lines)


def _worst(target: dict[str, Any]) -> str:
    unit, value = target.get("unit"), target.get("worst")
    if not isinstance(value, int | float):
        return "n/a"
    return _num(value, 3 if unit == "s" else 2) + {"x": " x", "s": " s", "MiB": " MiB"}.get(str(unit), "")


def splice(readme: str, body: str, begin: str = BEGIN, end: str = END, section: str = "## Speed") -> str:
    """`readme` with the text between `begin` and `end` replaced by `body` (markers added at the end
    of `section`, or of the file, when absent). Raises ReportError for an end before its begin.
    bench/migrate.py passes its own markers."""
    block = f"{begin}\n{body}\n{end}"
    start, stop = readme.find(begin), readme.find(end)
    if start >= 0 and stop >= 0:
        if stop < start:
            raise ReportError(f"README.md has the end marker before its begin marker ({end})")
        return readme[:start] + block + readme[stop + len(end) :]
    speed = readme.find(section) if readme.startswith(section) else readme.find("\n" + section)
    if speed < 0:
        return readme.rstrip("\n") + "\n\n" + block + "\n"
    after = readme.find("\n## ", speed + 1)
    cut = len(readme) if after < 0 else after
    return readme[:cut].rstrip("\n") + "\n\n" + block + "\n" + readme[cut:]


def write_readme(result: Path, readme: Path) -> str:
    """Put the table for `result` into `readme` (atomically). Returns the table. Raises ReportError
    (result unreadable) or OSError (README not writable)."""
    body = table(load(result))
    splice_file(readme, body)
    return body


def splice_file(readme: Path, body: str, begin: str = BEGIN, end: str = END, section: str = "## Speed") -> None:
    """splice() applied to the file `readme`, written atomically. Raises ReportError or OSError."""
    text = splice(readme.read_text(), body, begin, end, section)
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(readme)
