"""bench/: the plan of cells, repetitions and budget, the summary of fake samples, the issue's
targets per row and overall, and the Markdown tables made of them. Nothing here times anything."""

from __future__ import annotations

import argparse

import pytest
import report
import run
import summary
from cells import Cell, Sample, cost_key, over_budget, plan, repeats_for

MIB = 1 << 20


def args(*argv: str) -> argparse.Namespace:
    return run.parse_args(list(argv))


def test_the_default_plan_runs_every_shape_small_first() -> None:
    cells = plan(args())
    assert [c.shape for c in cells[:4]] == ["small"] * 4
    assert {(c.kind, c.runtime) for c in cells if c.shape == "small"} == {
        ("busybox", "crun"), ("busybox", "runc"), ("httpd", "crun"), ("httpd", "runc")
    }  # fmt: skip
    memory = [c for c in cells if c.shape == "memory"]
    assert [c.mib for c in memory] == [64] * 4 + [256] * 4 + [1024] * 4
    assert [c.runtime for c in memory[:4]] == ["crun", "crun", "runc", "runc"]
    assert [c for c in cells if c.shape == "rootfs"] == [Cell(2048, "random", "crun", "rootfs")]
    levels = [c for c in cells if c.shape == "level"]
    assert levels == [Cell(m, "compressible", "crun", "level", (1, 2, 3)) for m in (256, 1024)]
    assert levels[0].compressions == ("zstd1", "zstd2", "zstd3") and levels[0].engines == ("amber",)
    assert [c.shape for c in cells].index("level") > [c.shape for c in cells].index("rootfs")


def test_quick_is_one_repetition_of_small_cells() -> None:
    a = args("--quick")
    cells = plan(a)
    assert a.repeat == 1 and a.budget == run.DEFAULT_BUDGET
    assert {c.mib for c in cells if c.shape == "memory"} == {64}
    assert {(c.mib, c.shape) for c in cells if c.shape in ("rootfs", "level")} == {(128, "rootfs"), (64, "level")}
    assert {c.kind for c in cells if c.shape == "small"} == {"busybox"}


def test_plan_refuses_unknown_names_and_selects_shapes() -> None:
    with pytest.raises(SystemExit, match="unknown cell shape 'huge'"):
        plan(args("--cells", "memory,huge"))
    with pytest.raises(SystemExit, match="unknown runtime 'youki'"):
        plan(args("--runtimes", "youki"))
    cells = plan(args("--cells", "rootfs", "--rootfs-sizes", "256,2048", "--runtimes", "runc,crun"))
    assert [(c.mib, c.runtime) for c in cells] == [(256, "runc"), (2048, "runc")]


def test_what_each_cell_runs() -> None:
    assert Cell(64, "random", "crun").argv() == ["/bin/workload", "64", "random"]
    script = Cell(2048, "random", "crun", "rootfs").argv()[2]
    assert "-lt 32 ]" in script and f"bs={MIB} count=64" in script and script.endswith("exec /bin/workload 16 random")
    assert "count=16" in Cell(16, "random", "crun", "rootfs").argv()[2]
    assert "httpd -p 127.0.0.1:8080" in Cell(0, "httpd", "crun", "small").argv()[2]
    assert "httpd" not in Cell(0, "busybox", "crun", "small").argv()[2]
    assert Cell(2048, "random", "crun", "rootfs").disk_bytes > Cell(2048, "random", "crun").disk_bytes
    assert Cell(0, "httpd", "runc", "small").key == "small/httpd/runc"
    assert Cell(64, "random", "crun").key == "64MiB/random/crun"  # schema 1's keys, unchanged
    assert Cell(2048, "random", "crun", "rootfs").key == "rootfs/2048MiB/random/crun"


def test_big_cells_get_fewer_repetitions() -> None:
    a = args("--repeat", "3")
    assert repeats_for(Cell(1024, "random", "runc"), a) == 1
    assert repeats_for(Cell(1024, "random", "crun"), a) == 3
    assert repeats_for(Cell(2048, "random", "crun", "rootfs"), a) == 1
    assert repeats_for(Cell(256, "compressible", "crun", "level", (1, 2)), a) == 3
    assert repeats_for(Cell(1024, "compressible", "crun", "level", (1, 2)), args("--big-repeat", "2")) == 2


def test_over_budget_uses_measured_times_then_guesses() -> None:
    small, big = Cell(64, "random", "crun"), Cell(1024, "random", "crun")
    times = {cost_key(small): [10.0, 12.0]}
    assert not over_budget(100.0, small, [small], times, 123.0)  # 100 + 11 + 11
    assert over_budget(100.0, small, [small], times, 121.0)
    # 1 GiB not measured yet: the guess (8 + 0.04 s/MiB) counts
    assert over_budget(0.0, small, [big], times, 11.0 + 48.0)
    assert not over_budget(0.0, small, [big], times, 11.0 + 49.0)


def sample(engine: str, cell: Cell, op: str, seconds: float, mib: float | None = None, rss: int = 40) -> Sample:
    size = None if mib is None else int(mib * MIB)
    return Sample(engine, cell, op, seconds, rss * 1024, rss * 2048, archive_bytes=size)


def test_summary_medians_ratios_sizes_and_targets() -> None:
    gib = Cell(1024, "compressible", "crun")
    samples = [
        sample("amber", gib, "checkpoint_zstd", 1.0, 10.0),
        sample("amber", gib, "checkpoint_zstd", 3.0, 12.0, rss=120),
        sample("amber", gib, "checkpoint_zstd", 2.0, 11.0),
        sample("podman", gib, "checkpoint_zstd", 5.0, 10.0),
        sample("amber", gib, "restore_zstd", 1.0, 11.0),
        sample("podman", gib, "restore_zstd", 4.0, 10.0),
    ]
    rows = summary.summarize(samples)
    assert [r["op"] for r in rows] == ["checkpoint_zstd", "restore_zstd"]
    ck = rows[0]
    assert (ck["amber_s"], ck["podman_s"], ck["ratio"], ck["amber_n"]) == (2.0, 5.0, 0.4, 3)
    assert ck["amber_archive_mib"] == 11.0 and ck["size_ratio"] == pytest.approx(1.1)
    assert ck["amber_rss_mib"] == 120.0
    targets = {t["goal"]: t for t in ck["targets"]}
    assert set(targets) == {"g1_checkpoint", "size", "rss"}
    assert targets["g1_checkpoint"]["met"] is False  # 0.4 > 0.33
    assert targets["size"]["met"] is True and targets["rss"]["met"] is False
    assert [t["goal"] for t in rows[1]["targets"]] == ["g1_restore", "rss"]
    assert [t["met"] for t in rows[1]["targets"]] == [True, True]  # 0.25 <= 0.28; 40 MiB


def test_targets_of_each_shape() -> None:
    def goals(cell: Cell, op: str) -> list[str]:
        row = summary.summarize([sample("amber", cell, op, 1.0, 1.0), sample("podman", cell, op, 2.0, 1.0)])[0]
        return [t["goal"] for t in row["targets"]]

    assert goals(Cell(0, "busybox", "crun", "small"), "exec") == ["small"]
    assert goals(Cell(64, "random", "runc"), "restore_zstd") == ["m64", "rss"]
    assert goals(Cell(256, "random", "runc"), "restore_zstd") == ["rss"]  # no target between 64 MiB and 1 GiB
    assert goals(Cell(1024, "random", "crun"), "checkpoint_none") == ["g1_none", "rss"]
    assert goals(Cell(2048, "random", "crun", "rootfs"), "checkpoint_zstd") == ["rootfs", "size", "rss"]
    assert goals(Cell(64, "random", "crun"), "refuse_none") == ["refuse", "refuse_work"]
    assert goals(Cell(64, "random", "crun"), "show_zstd") == ["show"]
    assert goals(Cell(64, "random", "crun"), "roundtrip_zstd") == []


def test_level_rows_take_podman_from_the_memory_cell() -> None:
    mem = Cell(256, "compressible", "crun")
    lv = Cell(256, "compressible", "crun", "level", (1, 3))
    samples = [
        sample("amber", mem, "checkpoint_zstd", 1.0, 3.0),
        sample("podman", mem, "checkpoint_zstd", 2.0, 2.5),
        sample("amber", lv, "checkpoint_zstd3", 1.5, 2.75),
        sample("amber", lv, "checkpoint_zstd1", 0.8, 3.5),
        sample("amber", lv, "restore_zstd1", 0.6, 3.5),
    ]
    rows = [r for r in summary.summarize(samples) if r["shape"] == "level"]
    assert [(r["op"], r["level"]) for r in rows] == [("checkpoint_zstd1", 1), ("checkpoint_zstd3", 3),
                                                     ("restore_zstd1", 1)]  # fmt: skip
    assert rows[0]["podman_s"] == 2.0 and rows[0]["ratio"] == 0.4 and rows[0]["size_ratio"] == 1.4
    assert rows[0]["podman_from"] == "256MiB/compressible/crun"
    assert rows[2]["podman_s"] is None  # no podman restore in the memory cell: nothing made up
    text = report.table({"rows": rows})
    assert "| 1 | 256 | compressible | crun | 0.80 | 0.60 | 3.50 | 2.00, 2.50 | 1.40 |" in text
    assert "| 3 | 256 | compressible | crun | 1.50 | n/a | 2.75 | 2.00, 2.50 | 1.10 |" in text


def test_target_summary_worst_value_and_unmeasured() -> None:
    cell = Cell(64, "random", "crun")
    rows = summary.summarize([
        sample("amber", cell, "refuse_zstd", 0.2), sample("amber", cell, "refuse_none", 0.4),
        sample("amber", cell, "checkpoint_zstd", 0.5, 1.0),
    ])  # fmt: skip
    by = {t["goal"]: t for t in summary.target_summary(rows)}
    assert list(by) == list(summary.GOALS)
    assert by["refuse"]["worst"] == 0.4 and by["refuse"]["met"] is False and by["refuse"]["measured"] == 2
    assert by["refuse_work"]["met"] is None  # no read_head figure in fake samples
    assert by["m64"]["met"] is None and by["m64"]["of"] == 1  # podman absent: not measurable
    assert by["g1_checkpoint"]["of"] == 0 and by["g1_checkpoint"]["met"] is None  # not in this run
    assert by["rss"]["met"] is True and by["rss"]["unit"] == "MiB"


def test_report_tables_per_shape() -> None:
    small = Cell(0, "busybox", "crun", "small")
    root = Cell(2048, "random", "crun", "rootfs")
    samples = [sample(e, small, op, s) for e, s in (("amber", 0.2), ("podman", 0.1)) for op in ("run", "exec")]
    samples += [sample("amber", root, "checkpoint_zstd", 4.0, 2048.0), sample("podman", root, "checkpoint_zstd",
                8.0, 2040.0), sample("amber", root, "roundtrip_zstd", 7.0, 2048.0),
                sample("amber", root, "refuse_zstd", 0.25), sample("podman", root, "refuse_zstd", 0.5)]  # fmt: skip
    rows = summary.summarize(samples)
    text = report.table({"rows": rows, "targets": summary.target_summary(rows), "total_seconds": 600})
    lines = text.splitlines()
    assert "in 10.0 min" in lines[0]
    line = next(x for x in lines if x.startswith("| rootfs diff 2048 MiB | crun | zstd |"))
    assert line == (
        "| rootfs diff 2048 MiB | crun | zstd | 4.00 / 8.00 (0.50) | - | 7.00 / n/a | 2048.00 / 2040.00 | 40.0 "
        "| **no**: export <= 0.4 x podman |"
    )
    refusal = next(x for x in lines if x.startswith("| rootfs diff 2048 MiB | crun | 0.25"))
    assert refusal == (
        "| rootfs diff 2048 MiB | crun | 0.25 / 0.50 (0.50) | - | - | - | n/a "
        "| n/a: refusal zstd archive work <= 50 ms |"
    )
    assert "| run -d | 0.20 / 0.10 (2.00) | **no**: busybox crun |" in text
    assert lines.index("Small containers, one command at a time:") > lines.index(line)
    assert "| small containers (busybox, httpd): every command <= 1.0 x podman | 2.00 x | **no** |" in text
    assert "| wrong-runtime refusal, whole command <= 0.3 s | 0.250 s | yes |" in text
    assert "Compression levels" not in text


def test_op_order_and_labels() -> None:
    ops = ["rm", "show_zstd", "restore_none", "checkpoint_zstd2", "checkpoint_none", "checkpoint_zstd", "run"]
    assert sorted(ops, key=report.op_rank) == [
        "checkpoint_zstd", "checkpoint_none", "checkpoint_zstd2", "restore_none", "show_zstd", "run", "rm"
    ]  # fmt: skip
    assert report.op_label("checkpoint_zstd2") == "checkpoint --export, zstd -2"
    assert report.op_label("checkpoint") == "checkpoint (local)"
