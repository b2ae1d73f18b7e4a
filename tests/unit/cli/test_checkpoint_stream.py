"""`checkpoint --export -` refuses a terminal stdout before any work."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from amber.cli import main
from amber.errors import ExitCode


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_export_to_a_terminal_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    term = Terminal()
    monkeypatch.setattr("sys.stdout", term)
    code = main(["--root", str(tmp_path / "r"), "--runroot", str(tmp_path / "rr"), "checkpoint", "--export", "-", "c"])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "refusing to write a checkpoint archive to a terminal" in err and "hint: " in err
    assert term.getvalue() == ""
