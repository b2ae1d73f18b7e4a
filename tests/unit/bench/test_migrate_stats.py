"""bench/migrate_stats.py: downtime from a tick record, medians per cell, targets, the table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))  # the bench scripts import each other by name, as when run


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stats = load("migrate_stats")
MS = 1_000_000


def ticks_with_stop(stop_at_ms: int, stop_ms: int, until_ms: int) -> list[int]:
    """A 10 ms ticker from t=0 that does not run for `stop_ms` after the tick at `stop_at_ms`."""
    out = list(range(0, stop_at_ms + 1, 10))
    out += list(range(stop_at_ms + stop_ms, until_ms + 1, 10))
    return [t * MS for t in out]


def test_read_ticks_drops_a_torn_last_line_and_a_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "ticks"
    f.write_text("7 100\n8 200\n9 30")
    assert stats.read_ticks(f) == [100, 200]  # the realtime field
    f.write_text("7 100\n8 200\n9 ")
    assert stats.read_ticks(f) == [100, 200]
    f.write_text("100\n200\n")
    assert stats.read_ticks(f) == [100, 200]
    assert stats.read_ticks(tmp_path / "none") == []


def test_downtime_is_the_largest_gap_that_starts_while_the_move_ran() -> None:
    ticks = ticks_with_stop(500, 730, 2000)
    assert stats.downtime(ticks, 300 * MS, 1500 * MS) == 0.73
    # a longer stall before the move started is not the move's
    early = [0, 10 * MS, 400 * MS, *ticks_with_stop(500, 200, 2000)[41:]]
    assert stats.downtime(early, 450 * MS, 1500 * MS) == 0.2
    # the gap's end may lie after the command returned (the first tick on B comes a bit later)
    assert stats.downtime(ticks_with_stop(500, 900, 2000), 100 * MS, 600 * MS) == 0.9
    assert stats.downtime(ticks, 5000 * MS, 6000 * MS) is None  # no tick in the window
    assert stats.downtime([], 0, 1) is None


def test_tick_period_is_the_median_gap_before_the_move() -> None:
    ticks = ticks_with_stop(500, 730, 2000)
    assert stats.tick_period(ticks, 400 * MS) == 0.01
    assert stats.tick_period(ticks[:1], 400 * MS) is None


def test_amber_reports_and_refusals_are_parsed() -> None:
    line = "moved in 3.21 s; frozen 1.90 s (until it ran on the destination)\n"
    assert stats.frozen_from_report("progress\n" + line) == 1.9
    assert stats.frozen_from_report("error: no\n") is None
    assert stats.unavailable("error: --mode lazy is not built yet\nhint: use --mode page-server\n")
    assert stats.unavailable("amber migrate: error: argument --mode: invalid choice: 'lazy'")
    assert not stats.unavailable("error: CRIU failed: dump\n")


def sample(way: str, mib: int, downtime: float, total: float, runtime: str = "crun", **extra: Any) -> dict[str, Any]:
    return {"runtime": runtime, "mib": mib, "way": way, "rep": 0, "downtime_s": downtime, "total_s": total, **extra}


SAMPLES = [
    sample("copy", 1024, 2.9, 3.0, frozen_s=2.7),
    sample("copy", 1024, 3.1, 3.4, frozen_s=2.9),
    sample("copy", 1024, 9.0, 9.5, frozen_s=9.0),
    {"runtime": "crun", "mib": 1024, "way": "copy", "rep": 3, "error": "CommandError: boom"},
    sample("page-server", 1024, 1.8, 2.4),
    sample("podman-manual", 1024, 4.0, 6.0),
    sample("lazy", 64, 0.26, 1.0),
    sample("lazy", 1024, 0.40, 3.6),
    sample("lazy", 4096, 0.45, 14.0),
    {"runtime": "runc", "mib": 1024, "way": "lazy", "rep": 0, "error": "mode not available", "unavailable": True},
    {"runtime": "runc", "mib": 64, "way": "podman-manual", "rep": 0, "error": "podman failed", "unavailable": True},
    sample("page-server", 1024, 2.6, 3.0, runtime="runc"),
]


def test_summarize_takes_medians_of_the_good_samples_and_the_ratio_to_podman() -> None:
    rows = stats.summarize(SAMPLES)
    keys = [(r["runtime"], r["mib"], r["way"]) for r in rows]
    assert keys[:3] == [("crun", 64, "lazy"), ("crun", 1024, "copy"), ("crun", 1024, "page-server")]
    copy = rows[1]
    assert (copy["n"], copy["downtime_s"], copy["frozen_s"], copy["total_s"]) == (3, 3.1, 2.9, 3.4)
    assert copy["errors"] == ["CommandError: boom"]
    assert copy["total_vs_podman"] == 3.4 / 6.0
    podman = next(r for r in rows if r["way"] == "podman-manual")
    assert podman["total_vs_podman"] is None and podman["frozen_s"] is None
    lazy_runc = next(r for r in rows if (r["runtime"], r["way"]) == ("runc", "lazy"))
    assert lazy_runc["unavailable"] == "mode not available" and lazy_runc["n"] == 0 and lazy_runc["errors"] == []


def test_targets_say_met_missed_or_not_measured() -> None:
    got = {(t["runtime"], t["target"].split(" (")[0]): t for t in stats.targets(stats.summarize(SAMPLES))}
    assert got["crun", "page-server downtime at 1 GiB <= 2.0 s"]["met"] is True
    assert got["runc", "page-server downtime at 1 GiB <= 2.0 s"]["met"] is False
    assert got["crun", "lazy downtime at 1 GiB <= 0.5 s"]["value"] == 0.4
    flat = got["crun", "lazy downtime nearly flat 64 -> 4096 MiB"]
    assert flat["met"] is True and round(flat["value"], 3) == 0.19
    assert got["runc", "lazy downtime at 1 GiB <= 0.5 s"]["met"] is None  # not available there
    assert got["runc", "lazy downtime nearly flat 64 MiB -> 4 GiB"]["value"] is None
    copy = got["crun", "copy total at 1 GiB <= 0.6 x podman manual"]
    assert round(copy["value"], 3) == 0.567 and copy["met"] is True
    assert got["runc", "copy total at 1 GiB <= 0.6 x podman manual"]["met"] is None  # no podman row


def test_markdown_has_a_row_per_cell_the_targets_and_the_errors() -> None:
    rows = stats.summarize(SAMPLES)
    data = {
        "when": "2026-12-02T01:00:00Z",
        "command": ["bench/migrate.py", "--quick"],
        "load": "1.00 0.50 0.20",
        "versions": {"cpus": "2", "kernel": "6.1", "criu": "Version: 4.2.1", "podman": "podman version 5.4.2"},
        "podman": {"compress": "zstd", "copy": "over the ssh channel"},
        "rows": rows,
        "targets": stats.targets(rows),
    }
    text = stats.markdown(data)
    assert "`bench/migrate.py --quick`" in text and "load average 1.00 0.50 0.20" in text
    assert "| crun | 1024 | copy | 3.10 | 2.90 | 3.40 | 0.57 | 3 |" in text
    assert "| crun | 1024 | podman-manual | 4.00 | n/a | 6.00 | n/a | 1 |" in text
    assert "| runc | 1024 | lazy (mode not available) | n/a | n/a | n/a | n/a | 0 |" in text
    assert "| runc | 64 | podman-manual (podman failed) | n/a |" in text
    assert "| page-server downtime at 1 GiB <= 2.0 s | runc | 2.60 s | **no** |" in text
    assert "| copy total at 1 GiB <= 0.6 x podman manual | crun | 0.57 x | yes |" in text
    assert "| lazy downtime at 1 GiB <= 0.5 s | runc | n/a | n/a |" in text
    assert "1 error(s)" in text


migrate = load("migrate")


def test_options_pick_the_ways_and_the_repeats() -> None:
    args = migrate.parse_args(["--modes", "copy,lazy", "--manual", "podman,amber", "--sizes", "64,4096"])
    assert args.ways == ["copy", "lazy", "podman-manual", "amber-manual"]
    assert (migrate.repeats(64, args), migrate.repeats(4096, args)) == (3, 1)
    quick = migrate.parse_args(["--quick", "--manual", "none"])
    assert (quick.sizes, quick.repeat, quick.ways) == ("64", 1, ["copy", "page-server", "lazy"])
    with pytest.raises(SystemExit):
        migrate.parse_args(["--modes", "teleport"])


def test_report_writes_the_table_between_its_own_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result, readme = tmp_path / "migrate.json", tmp_path / "README.md"
    rows = stats.summarize(SAMPLES)
    result.write_text(json.dumps({"rows": rows, "targets": stats.targets(rows)}))
    other = "<!-- bench-report:begin (x) -->\nspeed table\n<!-- bench-report:end -->"
    readme.write_text(f"## Speed\n\n{other}\n\n{migrate.BEGIN}\nold\n{migrate.END}\n\n## Exit codes\n")
    monkeypatch.setattr(migrate, "README", readme)
    assert migrate.main(["--report", "--readme", "--output", str(result)]) == 0
    text = readme.read_text()
    assert other in text and "old" not in text and text.endswith(f"{migrate.END}\n\n## Exit codes\n")
    assert "| crun | 1024 | copy | 3.10 |" in text and "| crun | 1024 | copy | 3.10 |" in capsys.readouterr().out
    assert migrate.main(["--report", "--output", str(tmp_path / "none.json")]) == 1
    assert "hint: run bench/migrate.py first" in capsys.readouterr().err


def test_podman_runs_in_the_host_namespace_with_its_own_store(tmp_path: Path) -> None:
    podman = load("migrate_podman").HostPodman(tmp_path / "p", "amig250a")
    argv = podman.argv("ps", "-a")
    assert argv[:2] == ["nsenter", "--net=/run/netns/amig250a"] and argv[2] == "podman"
    assert argv[argv.index("--root") + 1] == str(tmp_path / "p" / "root") and argv[-2:] == ["ps", "-a"]
    assert "--network-config-dir" in argv and (tmp_path / "p" / "net").is_dir()


def test_ssh_options_become_plain_ssh_flags() -> None:
    bench = migrate.Bench.__new__(migrate.Bench)
    bench.ssh = [
        "--identity",
        "/k",
        "--ssh-option",
        "UserKnownHostsFile=/kh",
        "--ssh-option",
        "StrictHostKeyChecking=yes",
    ]
    assert bench.ssh_plain() == ["-i", "/k", "-o", "UserKnownHostsFile=/kh", "-o", "StrictHostKeyChecking=yes"]
