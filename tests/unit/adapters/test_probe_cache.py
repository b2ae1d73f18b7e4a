"""The per-binary probe cache: an answer is kept while the binary is unchanged, asked again when
it changes, never read from a file or directory someone else could have written, and never
used with a fake runner."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.adapters import probe_cache
from amber.adapters import run as runner
from tests.unit.fake_runner import stack


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    old = probe_cache.directory()
    probe_cache.configure(tmp_path / "run" / "probes")
    yield tmp_path / "run" / "probes"
    probe_cache.configure(old)


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "crun"
    path.write_bytes(b"#!/bin/true\n")
    return path


class Asker:
    def __init__(self, answer: object = "crun 1.21") -> None:
        self.answer = answer
        self.asked = 0

    def __call__(self) -> object:
        self.asked += 1
        return self.answer


def test_an_answer_is_kept_privately_and_reused(cache: Path, binary: Path) -> None:
    ask = Asker()
    assert probe_cache.ask(str(binary), "--version", ask) == "crun 1.21"
    assert probe_cache.ask(str(binary), "--version", ask) == "crun 1.21"
    assert ask.asked == 1
    (entry,) = cache.iterdir()
    assert (cache.stat().st_mode & 0o777, entry.stat().st_mode & 0o777) == (0o700, 0o600)
    assert json.loads(entry.read_text())["answer"] == "crun 1.21"
    other = Asker("other")
    assert probe_cache.ask(str(binary), "restore --help", other) == "other" and other.asked == 1


def test_a_changed_binary_is_asked_again(cache: Path, binary: Path) -> None:
    ask = Asker()
    probe_cache.ask(str(binary), "--version", ask)
    st = binary.stat()
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched
    probe_cache.ask(str(binary), "--version", ask)
    replaced = binary.with_name("crun.new")
    replaced.write_bytes(b"#!/bin/true\n")
    replaced.replace(binary)  # another inode, same size
    probe_cache.ask(str(binary), "--version", ask)
    assert ask.asked == 3
    assert probe_cache.ask(str(binary), "--version", ask) == "crun 1.21" and ask.asked == 3


def test_a_symlink_is_the_binary_it_names(cache: Path, binary: Path) -> None:
    ask = Asker()
    link = binary.with_name("link")
    link.symlink_to(binary)
    probe_cache.ask(str(binary), "--version", ask)
    probe_cache.ask(str(link), "--version", ask)
    assert ask.asked == 1


@pytest.mark.parametrize("where", ["file-mode", "dir-mode", "symlink"])
def test_a_cache_others_could_write_is_not_trusted(cache: Path, binary: Path, tmp_path: Path, where: str) -> None:
    probe_cache.ask(str(binary), "--version", Asker())
    (entry,) = cache.iterdir()
    planted = json.loads(entry.read_text())
    planted["answer"] = "planted"
    if where == "symlink":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text(json.dumps(planted))
        elsewhere.chmod(0o600)
        entry.unlink()
        entry.symlink_to(elsewhere)
    else:
        entry.write_text(json.dumps(planted))
        (entry if where == "file-mode" else cache).chmod(0o620 if where == "file-mode" else 0o770)
    ask = Asker()
    assert probe_cache.ask(str(binary), "--version", ask) == "crun 1.21" and ask.asked == 1
    if where != "dir-mode":  # replaced by the real answer, privately
        assert json.loads(entry.read_text())["answer"] == "crun 1.21" and not entry.is_symlink()


def test_no_answer_is_not_kept(cache: Path, binary: Path) -> None:
    ask = Asker(None)
    probe_cache.ask(str(binary), "cpuinfo dump", ask)
    probe_cache.ask(str(binary), "cpuinfo dump", ask)
    assert ask.asked == 2 and not cache.exists()


def test_fake_runners_and_no_directory_always_ask(cache: Path, binary: Path) -> None:
    ask = Asker()
    with runner.using(stack()):
        probe_cache.ask(str(binary), "--version", ask)
        probe_cache.ask(str(binary), "--version", ask)
    probe_cache.configure(None)
    probe_cache.ask(str(binary), "--version", ask)
    assert ask.asked == 3 and not cache.exists()


def test_the_cache_is_bounded(cache: Path, binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_cache, "MAX_ENTRIES", 3)
    for n in range(5):
        probe_cache.ask(str(binary), f"cpuinfo check {n}", Asker([0, ""]))
        entry = max(cache.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        os.utime(entry, ns=(n * 1_000_000_000, n * 1_000_000_000))  # asked in this order
    kept = sorted(json.loads(p.read_text())["question"] for p in cache.iterdir())
    assert kept == ["cpuinfo check 2", "cpuinfo check 3", "cpuinfo check 4"]
