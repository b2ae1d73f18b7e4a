"""The CLI's progress bar (cli/progress.py) and the archive adapter's progress callback."""

from __future__ import annotations

import io
from pathlib import Path

from amber.adapters import checkpoint_archive as archive
from amber.cli.progress import ProgressBar, progress_bar, render


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render() -> None:
    line = render("exporting", 10 * 1024 * 1024, 40 * 1024 * 1024, 2.0)
    assert line.startswith("exporting [######------------------]")
    assert "10.0 MiB / 40.0 MiB" in line and "5.0 MiB/s" in line and "0:00:06 left" in line
    assert "0:00:00 left" in render("x", 5, 5, 1.0) and "[" + "#" * 24 + "]" in render("x", 0, 0, 0.0)


def test_only_on_a_terminal_and_not_quiet() -> None:
    assert progress_bar("x", stream=io.StringIO()) is None
    assert progress_bar("x", stream=Tty(), quiet=True) is None
    assert isinstance(progress_bar("x", stream=Tty()), ProgressBar)


def test_bar_redraws_one_line_and_ends_it() -> None:
    out = Tty()
    bar = ProgressBar("importing", out, every=0.0)
    bar(1, 4)
    bar(4, 4)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "importing" in text
    bar.close()  # twice: no second newline
    assert out.getvalue() == text


def test_archive_write_and_extract_report_progress(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "checkpoint").mkdir(parents=True)
    (bundle / "checkpoint" / "pages-1.img").write_bytes(b"x" * 300_000)
    (bundle / "checkpoint" / "inventory.img").write_bytes(b"i")
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "a.tar"
    head = {archive.CONFIG_DUMP: b"{}", archive.SPEC_DUMP: b"{}"}
    archive.write_archive(
        dest,
        bundle,
        ["checkpoint"],
        archive.Compression.NONE,
        head=head,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen and seen[-1][0] == seen[-1][1] >= 300_001
    assert all(d <= t for d, t in seen)
    got: list[tuple[int, int]] = []
    archive.extract_archive(dest, tmp_path / "out", progress=lambda d, t: got.append((d, t)))
    assert got[-1] == (dest.stat().st_size, dest.stat().st_size)
    assert (tmp_path / "out" / "checkpoint" / "pages-1.img").stat().st_size == 300_000
