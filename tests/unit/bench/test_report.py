"""bench/report.py: the README's Speed table made from a result file, and its splice into README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import report  # bench/report.py (conftest.py puts bench/ on sys.path)

RESULT = {
    "when": "2026-12-01T23:00:00Z",
    "command": ["python", "bench/run.py", "--quick"],
    "versions": {"cpus": "2", "kernel": "6.1", "criu": "Version: 4.2.1", "podman": "podman version 5.4.2"},
    "rows": [
        {"op": "restore_zstd", "mib": 64, "kind": "random", "runtime": "crun", "amber_s": 0.5, "podman_s": 1.0,
         "ratio": 0.5, "amber_rss_mib": 40.0, "targets": []},
        {"op": "checkpoint_zstd", "mib": 1024, "kind": "random", "runtime": "crun", "amber_s": 2.0,
         "podman_s": None, "ratio": None, "amber_rss_mib": 51.0,
         "targets": [{"target": "<= 0.5 x podman", "met": None}, {"target": "amber RSS <= 100 MiB", "met": True}]},
    ],
    "targets": [{"target": "amber RSS <= 100 MiB", "worst": 51.0, "met": True}],
    "errors": [],
}  # fmt: skip


def test_table_reads_a_schema_1_result_and_says_what_was_not_measured() -> None:
    text = report.table(RESULT)
    rows = [line for line in text.splitlines() if line.startswith("| 64 MiB") or line.startswith("| 1024 MiB")]
    # one line per cell and compression, small cells first; no "shape" (schema 1) is a memory cell
    assert rows[0] == "| 64 MiB random | crun | zstd | - | 0.50 / 1.00 (0.50) | - | - | 40.0 | - |"
    assert rows[1] == (
        "| 1024 MiB random | crun | zstd | 2.00 / n/a | - | - | n/a / n/a | 51.0 | n/a: export <= 0.5 x podman |"
    )
    assert "`python bench/run.py --quick`" in text and "2026-12-01T23:00:00Z" in text
    assert "| amber RSS <= 100 MiB | 51.00 | yes |" in text
    assert "Small containers" not in text and "Compression levels" not in text


def test_splice_replaces_only_the_marked_block() -> None:
    readme = f"# x\n\n## Speed\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\n\n## Exit codes\n"
    out = report.splice(readme, "new")
    assert out == f"# x\n\n## Speed\n\nintro\n\n{report.BEGIN}\nnew\n{report.END}\n\n## Exit codes\n"
    assert report.splice(out, "new") == out  # re-running is stable


def test_splice_adds_the_block_at_the_end_of_the_speed_section() -> None:
    out = report.splice("## Speed\n\nintro\n\n## Exit codes\n", "t")
    assert out == f"## Speed\n\nintro\n\n{report.BEGIN}\nt\n{report.END}\n\n## Exit codes\n"


def test_splice_refuses_markers_out_of_order() -> None:
    with pytest.raises(report.ReportError, match="end marker before"):
        report.splice(f"{report.END}\n{report.BEGIN}\n", "t")


def test_write_readme_and_load_errors(tmp_path: Path) -> None:
    result = tmp_path / "latest.json"
    result.write_text(json.dumps(RESULT))
    readme = tmp_path / "README.md"
    readme.write_text("## Speed\n")
    body = report.write_readme(result, readme)
    assert body in readme.read_text()
    with pytest.raises(report.ReportError, match="run bench/run.py first"):
        report.load(tmp_path / "missing.json")
    result.write_text("{}")
    with pytest.raises(report.ReportError, match="no 'rows'"):
        report.load(result)
