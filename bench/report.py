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

# Table order: op key -> label (run.py's OPS says the same in its own words).
LABELS = {
    "checkpoint_zstd": "checkpoint --export, zstd",
    "restore_zstd": "restore --import, zstd",
    "checkpoint_none": "checkpoint --export, none",
    "restore_none": "restore --import, none",
    "refuse_zstd": "refused wrong --runtime, zstd",
    "refuse_none": "refused wrong --runtime, none",
    "show_zstd": "archive show (checkpointctl show), zstd",
    "show_none": "archive show (checkpointctl show), none",
}


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


def table(data: dict[str, Any]) -> str:
    """Markdown: the run's header line, one row per operation x size x data x runtime, then the
    targets (worst value, met or not)."""
    versions = data.get("versions", {})
    command = " ".join(str(a) for a in data.get("command", [])) or "bench/run.py"
    lines = [
        f"Run {data.get('when', '?')} on {versions.get('cpus', '?')} cores, kernel {versions.get('kernel', '?')}, "
        f"{versions.get('criu', 'CRIU ?')}, {versions.get('podman', 'podman absent')}; command `{command}`. "
        "Medians in seconds, podman measured in the same run; ratio below 1: amber is faster.",
        "",
        "| operation | MiB | data | runtime | amber s | podman s | amber/podman | amber RSS MiB | met? |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    order = list(LABELS)
    rows = sorted(
        data["rows"],
        key=lambda r: (
            order.index(r["op"]) if r.get("op") in order else len(order),
            r.get("mib", 0),
            r.get("kind", ""),
        ),
    )
    for r in rows:
        targets = r.get("targets") or []
        met = "; ".join(f"{t.get('target', '')}: {_met(t.get('met'))}" for t in targets) or "-"
        lines.append(
            f"| {LABELS.get(r.get('op', ''), r.get('op', '?'))} | {r.get('mib', '?')} | {r.get('kind', '?')} "
            f"| {r.get('runtime', '?')} | {_num(r.get('amber_s'))} | {_num(r.get('podman_s'))} "
            f"| {_num(r.get('ratio'))} | {_num(r.get('amber_rss_mib'), 1)} | {met} |"
        )
    summary = data.get("targets") or []
    if summary:
        lines += ["", "| target | worst measured | met? |", "| --- | ---: | --- |"]
        lines += [f"| {t.get('target', '?')} | {_num(t.get('worst'))} | {_met(t.get('met'))} |" for t in summary]
    errors = data.get("errors") or []
    if errors:
        lines += ["", f"The run recorded {len(errors)} error(s); see `errors` in the result file."]
    return "\n".join(lines)


def splice(readme: str, body: str) -> str:
    """`readme` with the text between BEGIN and END replaced by `body` (markers added at the end of
    the "## Speed" section, or of the file, when absent). Raises ReportError for an END before BEGIN."""
    block = f"{BEGIN}\n{body}\n{END}"
    start, stop = readme.find(BEGIN), readme.find(END)
    if start >= 0 and stop >= 0:
        if stop < start:
            raise ReportError("README.md has the bench-report end marker before its begin marker")
        return readme[:start] + block + readme[stop + len(END) :]
    speed = readme.find("## Speed") if readme.startswith("## Speed") else readme.find("\n## Speed")
    if speed < 0:
        return readme.rstrip("\n") + "\n\n" + block + "\n"
    after = readme.find("\n## ", speed + 1)
    cut = len(readme) if after < 0 else after
    return readme[:cut].rstrip("\n") + "\n\n" + block + "\n" + readme[cut:]


def write_readme(result: Path, readme: Path) -> str:
    """Put the table for `result` into `readme` (atomically). Returns the table. Raises ReportError
    (result unreadable) or OSError (README not writable)."""
    body = table(load(result))
    text = splice(readme.read_text(), body)
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(readme)
    return body
