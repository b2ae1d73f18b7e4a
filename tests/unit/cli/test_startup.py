"""What a command pays before it starts working: the command line must not import the engine's
heavy parts (the checkpoint/restore engine, the migration, tar, zstd, pycriu) just to parse."""

from __future__ import annotations

import subprocess
import sys

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
