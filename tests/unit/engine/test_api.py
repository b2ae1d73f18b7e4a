"""The library API: what `import amber` exports, and the option rules the library enforces (the
same UsageError the CLI gives), checked before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import amber
from amber.adapters import podman_format as fmt
from amber.adapters.checkpoint_archive import ArchiveHead
from amber.adapters.runtime import RuntimeInfo
from amber.adapters.tar.compression import Compression
from amber.cli import main
from amber.config import Settings
from amber.engine.restore import RestoreOptions
from amber.engine.spec import AUTOREMOVE_ANNOTATION
from amber.errors import ConflictError, NotFoundError, UsageError
from amber.models import Container, Image, Status
from tests.unit.fake_runner import stack


@pytest.fixture
def eng(tmp_path: Path) -> amber.Engine:
    # The fake runner starts nothing: an option refused late would fail the test loudly.
    return amber.Engine(tmp_path / "root", tmp_path / "run", config=tmp_path / "none.toml", runner=stack())


def test_public_names_resolve() -> None:
    for name in amber.__all__:
        assert getattr(amber, name) is not None
    assert issubclass(amber.UsageError, amber.AmberError) and int(amber.ExitCode.USAGE) == 2
    assert amber.Container.__module__ == "amber.models" and amber.Report.__name__ == "Report"
    with pytest.raises(AttributeError):
        _ = amber.nothing_like_this


def test_import_amber_is_cheap() -> None:
    code = "import sys, amber; print(sorted(m for m in sys.modules if m.startswith('amber')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['amber']"


def test_engine_defaults_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBER_ROOT", str(tmp_path / "r"))
    monkeypatch.setenv("AMBER_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("AMBER_RUNROOT", raising=False)
    e = amber.Engine()
    assert e.settings.root == tmp_path / "r" and str(e.settings.runroot) == "/run/amber"
    settings = Settings(root=tmp_path, runroot=tmp_path, default_runtime="runc")
    assert amber.Engine.from_settings(settings).settings is settings
    with pytest.raises(UsageError):
        amber.Engine(tmp_path, settings=settings)


def test_empty_roots_list_nothing(eng: amber.Engine) -> None:
    assert eng.containers() == [] and eng.images() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compress": "gzip"}, "--compress can only be used with --export"),
        ({"ignore_rootfs": True}, "--ignore-rootfs can only be used with --export"),
        ({"export": "x.tar", "compress": "lz4"}, 'selected compression algorithm ("lz4") not supported'),
        ({"export": ""}, "an empty path was given"),
    ],
)
def test_checkpoint_options_refused(eng: amber.Engine, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eng.checkpoint("web", **kwargs)  # type: ignore[arg-type]


def test_checkpoint_needs_exactly_names_or_all(eng: amber.Engine) -> None:
    with pytest.raises(UsageError, match="--all and containers cannot be used together"):
        eng.checkpoint("web", all=True)
    with pytest.raises(UsageError, match="at least one name or id") as exc:
        eng.checkpoint()
    assert exc.value.hint == "or use --all"


def test_restore_options_refused(eng: amber.Engine, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="restore needs a container, or --import FILE"):
        eng.restore_report()
    with pytest.raises(UsageError, match="cannot use --import with a container argument"):
        eng.restore_report("web", archive=tmp_path / "a.tar")
    with pytest.raises(UsageError, match="--name and --ignore-rootfs can only be used with --import"):
        eng.restore_report("web", name="other")
    with pytest.raises(UsageError, match="--tcp-established cannot be used with --name"):
        eng.restore_archive(tmp_path / "a.tar", name="web2", tcp_established=True)


def test_one_option_record_per_call() -> None:
    """The facade builds each record once from its keywords; the services take only records."""
    from amber.engine.archive_models import InspectOptions
    from amber.engine.options import restore_options

    assert restore_options("crun", keep=True, publish=["8080:80"]) == RestoreOptions(
        runtime="crun", keep=True, publish=("8080:80",)
    )
    assert restore_options("crun", runtime="runc").runtime == "runc" and restore_options(None).runtime is None
    assert not InspectOptions(mounts=True, stats=True, metadata=True).processes
    assert all(InspectOptions(**{part: True}).processes for part in ("ps_tree", "ps_tree_env", "files", "sockets"))
    assert InspectOptions(pid=1).processes


def test_restore_of_a_container_refuses_an_archive_s_options(eng: amber.Engine) -> None:
    with pytest.raises(UsageError, match="--ignore-volumes and --publish can only be used with --import"):
        eng.restore("web", publish=["8080:80"])


def test_run_detached_rm_is_accepted(eng: amber.Engine) -> None:
    # podman's semantics (issue 11): `run -d --rm` is no longer refused; the container is removed
    # when it exits (tests/integration/test_lifecycle.py). Here it goes on to look up the image.
    with pytest.raises(NotFoundError, match="no such image"):
        eng.run("localhost/busybox:1", ["true"], detach=True, rm=True)


def test_cli_refuses_the_same_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    roots = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    assert main([*roots, "checkpoint", "--compress", "none", "web"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --compress can only be used with --export\nhint: ")


def test_usage_errors_say_error_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["no-such-command"], ["stop", "-t", "soon", "web"], ["archive"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        lines = err.splitlines()
        assert lines[0].startswith("error: ") and lines[-1].startswith("hint: "), err
        assert "usage:" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"amber {amber.__version__}\n"
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert 'version = {attr = "amber.__version__"}' in pyproject  # the one place it is written


def test_version_command_names_the_stack(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "--runroot", str(tmp_path), "version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"amber:    {amber.__version__}\ncriu:     ")


@pytest.mark.parametrize("status", [Status.CHECKPOINTED, Status.EXITED])
def test_pause_names_what_is_not_running(eng: amber.Engine, status: Status) -> None:
    """podman: '"exited" is not running, can't pause'."""
    c = Container("c" * 64, "one", "i", "img", "runc", "/usr/bin/runc", ["sh"], "now", status=status, exit_code=0)
    eng.services.containers.store.save(c)
    with pytest.raises(ConflictError, match=f"one is {status}, not running: cannot pause it"):
        eng.pause("one")
    with pytest.raises(ConflictError, match="not paused: cannot unpause it"):
        eng.unpause("one")


@pytest.mark.parametrize(("annotations", "auto_remove"), [({AUTOREMOVE_ANNOTATION: "TRUE"}, True), ({}, False)])
def test_restore_keeps_rm_from_the_spec(eng: amber.Engine, annotations: dict[str, str], auto_remove: bool) -> None:
    """podman keeps --rm across export and import: its autoremove annotation is in spec.dump."""
    path = eng.layout.root / "a.tar"
    head = ArchiveHead(path, Compression.NONE, fmt.ConfigDump(id="a" * 64), {"annotations": annotations}, None, 0)
    image = Image("i" * 64, ["localhost/x:1"], [], "now", 0)
    runc = RuntimeInfo("runc", "/usr/bin/runc", "1", True)
    c = eng.services.checkpoints.restores._new_restored_record(path, head, runc, image, "web", RestoreOptions())
    assert c.auto_remove is auto_remove
