"""The real runner (SystemRunner) with real short-lived processes: output captured, input fed,
timeouts enforced, and a process left behind holding the pipes does not hold the caller."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from amber.adapters import run as runners
from amber.adapters.run import SystemRunner

ENV = {"PATH": "/usr/bin:/bin"}


def test_output_exit_code_and_input_are_kept() -> None:
    res = SystemRunner().run(["sh", "-c", "cat; echo err >&2; exit 3"], input=b"hello", env=ENV, timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (3, "hello", "err\n")


def test_a_program_over_its_timeout_is_killed() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        SystemRunner().run(["sleep", "30"], env=ENV, timeout=0.5)


def test_a_leftover_process_holding_the_pipes_does_not_hold_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shell exits at once; the sleep it leaves (as a CRIU helper stopped under ptrace would)
    # keeps stdout and stderr open. Before, run() waited for the pipes until its timeout.
    monkeypatch.setattr(runners, "PIPE_GRACE", 0.5)
    res = SystemRunner().run(["sh", "-c", "sleep 60 & echo $!"], env=ENV, timeout=60)
    leftover = int(res.stdout.split()[0])
    try:
        assert res.returncode == 0
        assert "a process it left behind still holds its output" in res.stderr
    finally:
        os.kill(leftover, signal.SIGKILL)
