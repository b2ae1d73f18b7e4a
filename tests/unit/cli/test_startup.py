"""What a command pays before it starts working: the command line must not import the engine's
heavy parts (the checkpoint/restore engine, the migration, tar, zstd, pycriu) just to parse."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    "amber.engine.checkpoint",
    "amber.engine.restore",
    "amber.engine.migrate",
    "amber.adapters.checkpoint_archive",
    "tarfile",
    "zstandard",
    "pycriu",
)


def test_parsing_the_command_line_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from amber.cli import build_parser\n"
        "build_parser().parse_args(['migrate', '--mode', 'page-server', 'web', 'ssh://h'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_migrate_modes_are_the_engine_s() -> None:
    from amber.engine import migrate, migrate_modes

    assert migrate.MODES is migrate_modes.MODES and migrate.DEFAULT_MODE == migrate_modes.DEFAULT_MODE
    assert migrate.DEFAULT_MODE in migrate.MODES


def test_commands_table_is_what_the_modules_register() -> None:
    import argparse

    from amber.cli import COMMANDS, MODULES, command_module

    assert sorted(COMMANDS) == sorted(MODULES)
    for name in MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        command_module(name).register(sub)
        assert sorted(sub.choices) == sorted(COMMANDS[name]), name


@pytest.mark.parametrize(
    "argv",
    [
        ["ps", "-a"],
        ["--root", "/r", "--runtime", "runc", "--debug", "run", "-d", "--name", "x", "img", "sh"],
        ["--root=/r", "restore", "--import", "a.tar", "--name", "b"],
        ["container", "checkpoint", "--export", "a.tar", "web"],
        ["container", "ps"],
        ["checkpoint", "-a"],
        ["archive", "show", "a.tar"],
        ["migrate", "web", "ssh://h"],
        ["network", "ls"],
    ],
)
def test_a_command_line_parses_as_with_every_command(argv: list[str]) -> None:
    from amber.cli import build_parser

    assert build_parser(argv).parse_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", [["nosuch"], ["-h", "ps"], ["--version"], []])
def test_other_command_lines_get_every_command(argv: list[str]) -> None:
    from amber.cli import build_parser

    assert build_parser(argv).format_help() == build_parser().format_help()
