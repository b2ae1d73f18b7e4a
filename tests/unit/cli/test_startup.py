"""What a command pays before it starts working: the command line must not import the engine's
heavy parts (the checkpoint/restore engine, the migration, tar, zstd, pycriu) just to parse."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

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


# What the commands that only read or remove records must not import (issue #15): the network
# tool, the archive format, the container monitor, the run/exec machinery, image import, the tar
# engine, zstd, pycriu, the other command modules.
NOT_FOR_QUICK_COMMANDS = (
    *HEAVY,
    "amber.adapters.netavark",
    "amber.adapters.podman_format",
    "amber.adapters.conmon",
    "amber.adapters.image_sources",
    "amber.adapters.tar",
    "amber.engine.attachments",
    "amber.engine.exec_session",
    "amber.engine.mount_specs",
    "amber.engine.run_options",
    "amber.cli.archive_cmds",
    "amber.cli.checkpoint_cmds",
    "tomllib",
)


@pytest.mark.parametrize("argv", [["ps", "-a"], ["inspect", "web"], ["rm", "web"], ["stop", "web"]])
def test_quick_commands_import_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    exit_code, imported = _imported(tmp_path, argv, NOT_FOR_QUICK_COMMANDS)
    assert imported == "[]", (argv, exit_code)


# What checkpoint and an in-place restore must not import (they stop at "not found" here, after
# loading the checkpoint service): the archive restore's checks (image decoding, privileges,
# CPU), the stream reader, checkpoint images, the migration, podman's views, pycriu; nor, until
# an export asks for them, the archive writer, page packing, the tar engine, tarfile and zstd;
# nor, until a container's network asks for it, the network code.
NOT_FOR_CHECKPOINT = (
    "amber.engine.attachments",
    "amber.engine.networks",
    "amber.adapters.netavark",
    "amber.adapters.checkpoint_archive",
    "amber.adapters.archive_writer",
    "amber.adapters.archive_inplace",
    "amber.adapters.page_pack",
    "amber.adapters.tar.compression",
    "tarfile",
    "zstandard",
    "amber.engine.archive_checks",
    "amber.engine.archive_models",
    "amber.engine.privilege_checks",
    "amber.engine.restore_net",
    "amber.engine.checkpoint_images",
    "amber.engine.migrate",
    "amber.engine.podman_view",
    "amber.adapters.checkpoint_stream",
    "amber.adapters.criu_images",
    "amber.adapters.criu_memory",
    "amber.adapters.image_sources",
    "amber.adapters.skopeo",
    "pycriu",
)


@pytest.mark.parametrize("argv", [["checkpoint", "web"], ["restore", "web"], ["container", "restore", "web"]])
def test_checkpoint_and_restore_in_place_import_no_archive_restore(argv: list[str], tmp_path: Path) -> None:
    out = _imported(tmp_path, argv, NOT_FOR_CHECKPOINT)
    assert out == ("3", "[]"), argv  # exit 3: no such container, past the checkpoint service's import


def test_container_cleanup_builds_only_its_own_parser(tmp_path: Path) -> None:
    modules = ("amber.cli.checkpoint_cmds", "amber.cli.progress", *NOT_FOR_QUICK_COMMANDS)
    assert _imported(tmp_path, ["container", "cleanup", "--rm", "web"], modules)[1] == "[]"


def test_run_on_an_ordinary_image_imports_no_checkpoint_image_code(tmp_path: Path) -> None:
    # run/create ask whether their image is a checkpoint image: for an ordinary one (no
    # marker), the answer costs no OCI layout, skopeo, tar or zstd import.
    modules = ("amber.engine.checkpoint_images", "amber.adapters.image_sources", "tarfile", "zstandard")
    code = (
        "import sys\n"
        "from amber.engine import Engine\n"
        "from amber.models import Image\n"
        f"e = Engine({str(tmp_path / 'root')!r}, {str(tmp_path / 'run')!r}, config={str(tmp_path / 'none.toml')!r})\n"
        "image = Image(id='0' * 64, names=['localhost/x:1'], layers=[], created='', size=0)\n"
        "e.services.images.get = lambda ref: image\n"
        "e.require_runnable('localhost/x:1')\n"
        "print(e.is_checkpoint_image('localhost/x:1'))\n"
        f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "[]"]


def test_a_container_s_record_of_no_network_nor_mounts_imports_no_network_code(tmp_path: Path) -> None:
    # What stop, rm and `container cleanup` read of a --network none container: its attachments
    # record, its named volumes; neither netavark, the network service nor the mount specs.
    modules = (
        "amber.adapters.netavark",
        "amber.engine.networks",
        "amber.engine.mount_specs",
        "amber.engine.volumes",
        "amber.engine.attachments",
    )
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from amber.engine.attachment_records import Attachments, load, save\n"
        f"path = Path({str(tmp_path / 'attachments.json')!r})\n"
        "save(path, load(path))\n"
        "att = load(path)\n"
        "print(att == Attachments(), att.named_volumes(), att.binds(), att.mount_specs())\n"
        f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "[]", "[]", "[]", "[]"]


def _imported(tmp_path: Path, argv: list[str], modules: tuple[str, ...]) -> tuple[str, str]:
    """(exit code, which of `modules` were imported) after `amber ARGV` on an empty root."""
    roots = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    config = ["--config", str(tmp_path / "none.toml")]  # no config file: tomllib is not needed
    code = (
        "import sys\n"
        "from amber.cli import main\n"
        f"code = main({[*roots, *config, *argv]!r})\n"
        f"print(code, sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    exit_code, imported = out.strip().splitlines()[-1].split(" ", 1)
    return exit_code, imported


def test_migrate_modes_are_the_engine_s() -> None:
    from amber.engine import migrate, migrate_modes

    assert migrate.MODES is migrate_modes.MODES and migrate.DEFAULT_MODE == migrate_modes.DEFAULT_MODE
    assert migrate.DEFAULT_MODE in migrate.MODES


def test_commands_table_is_what_the_modules_register() -> None:
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
        ["inspect", "-f", "{{.Name}}", "web"],
        ["exec", "-i", "web", "cat", "f"],
        ["rm", "-f", "-t", "1", "web"],
        ["stop", "web"],
        ["container", "cleanup", "--rm", "web"],
        ["container", "ls", "-a"],
        ["container", "list"],
        ["container", "restore", "--import", "a.tar", "--name", "b"],
        ["container", "run", "-d", "img"],
        ["--debug", "container", "exec", "web", "true"],
    ],
)
def test_a_command_line_parses_as_with_every_command(argv: list[str]) -> None:
    from amber.cli import build_parser

    assert build_parser(argv).parse_args(argv) == build_parser().parse_args(argv)


def _verb_help(parser: argparse.ArgumentParser, verb: str) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verb_parser: argparse.ArgumentParser = sub.choices[verb]
    return verb_parser.format_help()


@pytest.mark.parametrize("verb", ["ps", "inspect", "run", "exec", "rm", "stop", "logs"])
def test_a_verb_built_alone_has_the_same_help(verb: str) -> None:
    from amber.cli import build_parser

    assert _verb_help(build_parser([verb]), verb) == _verb_help(build_parser(), verb)


@pytest.mark.parametrize("verb", ["cleanup", "checkpoint", "restore", "ls", "run"])
def test_a_container_verb_built_alone_has_the_same_help(verb: str) -> None:
    from amber.cli import build_parser

    def group(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        container: argparse.ArgumentParser = sub.choices["container"]
        return container

    alone = group(build_parser(["container", verb]))
    assert _verb_help(alone, verb) == _verb_help(group(build_parser()), verb)


@pytest.mark.parametrize("argv", [["nosuch"], ["-h", "ps"], ["--version"], []])
def test_other_command_lines_get_every_command(argv: list[str]) -> None:
    from amber.cli import build_parser

    assert build_parser(argv).format_help() == build_parser().format_help()
