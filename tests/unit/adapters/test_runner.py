"""Injectable tools: runtime discovery, the runtime rule and CRIU probes under a fake runner (no
root, no real runc or crun), and how CommandError names the way a tool ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.adapters import criu, runtime
from amber.adapters import run as runners
from amber.adapters.run import run, using
from amber.config import Settings
from amber.engine import Engine, runtime_rule
from amber.errors import CommandError, PreconditionError, RuntimeMismatchError
from tests.unit.fake_runner import stack


def test_runtimes_are_found_and_told_apart_by_their_version() -> None:
    fake = stack()
    with using(fake):
        found = {r.kind: r for r in runtime.installed()}
    assert found["crun"].path == "/fake/bin/crun" and found["crun"].version == "1.21" and found["crun"].criu
    assert found["runc"].path == "/fake/sbin/runc" and found["runc"].version == "1.1.15+ds1" and found["runc"].criu
    assert ["/fake/bin/crun", "--version"] in fake.calls


def test_same_runtime_any_spelling(tmp_path: Path) -> None:
    link = tmp_path / "my-runtime"
    link.symlink_to("/fake/bin/crun")
    with using(stack()):
        for spelling in ("crun", "/fake/bin/crun", str(link)):
            assert runtime_rule.select_runtime("crun", spelling, "a.tar").kind == "crun"
            assert runtime_rule.select_runtime("/elsewhere/crun", spelling, "a.tar").path == "/fake/bin/crun"


def test_archive_runtime_used_when_none_requested() -> None:
    with using(stack()):
        assert runtime_rule.select_runtime("runc", None, "a.tar").path == "/fake/sbin/runc"
        assert runtime_rule.select_runtime("io.containerd.runc.v2", None, "a.tar").kind == "runc"


def test_incompatible_runtime_refused() -> None:
    with using(stack()), pytest.raises(RuntimeMismatchError) as exc:
        runtime_rule.select_runtime("crun", "runc", "web.tar.zst")
    assert exc.value.hint == "leave out --runtime, or give crun"


def test_missing_runtime_lists_the_installed_ones() -> None:
    with using(stack(runc=False)), pytest.raises(PreconditionError) as exc:
        runtime_rule.select_runtime("runc", None, "a.tar")
    assert "'runc', which is not installed on this host (installed: crun (/fake/bin/crun))" in exc.value.message


def test_table_is_the_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runtime_rule.RESTORABLE_BY, "crun", frozenset({"crun", "runc"}))
    with using(stack(crun=False)):
        assert runtime_rule.select_runtime("crun", None, "a.tar").kind == "runc"
        assert runtime_rule.select_runtime("crun", "runc", "a.tar").kind == "runc"


def test_crun_without_criu_cannot_checkpoint() -> None:
    with using(stack(crun_criu=False)):
        info = runtime.resolve("crun")
    assert not info.criu
    with pytest.raises(PreconditionError, match="built without CRIU support"):
        runtime.require(info, "checkpoint")


def test_fake_answers_are_not_cached_for_the_real_runner() -> None:
    with using(stack(crun_criu=False)):
        assert not runtime.describe("/fake/bin/crun").criu
        assert criu.version() == (4, 2, 1) and not criu.dirty_tracking()
    assert "/fake/bin/crun" not in runtime._cache
    assert runners.current() is runners.SYSTEM


def test_engine_takes_a_runner(tmp_path: Path) -> None:
    fake = stack(runc=False)
    engine = Engine(tmp_path / "root", tmp_path / "run", config=tmp_path / "none.toml", runner=fake)
    info = engine.host_info()
    assert info.criu_version == "4.2.1" and not info.dirty_tracking
    assert [(r.kind, r.path) for r in info.runtimes] == [("crun", "/fake/bin/crun")]
    assert runners.current() is runners.SYSTEM  # only the engine's own calls use it
    assert all(call[0].startswith("/fake/") for call in fake.calls)


def test_no_criu_is_reported_not_raised(tmp_path: Path) -> None:
    fake = stack()
    del fake.tools["criu"]
    settings = Settings(root=tmp_path / "root", runroot=tmp_path / "run", default_runtime="crun")
    info = Engine.from_settings(settings, runner=fake).host_info()
    assert not info.criu_installed and info.criu_version == ""


def test_exit_code_named() -> None:
    with pytest.raises(CommandError) as exc:
        run(["sh", "-c", "exit 3"], timeout=60)
    assert exc.value.message == '"sh" failed with exit code 3'


def test_signal_named() -> None:
    with pytest.raises(CommandError) as exc:
        run(["sh", "-c", "kill -KILL $$"], timeout=60)
    assert exc.value.message == '"sh" was killed by SIGKILL'
    assert exc.value.returncode == -9


def test_signal_named_under_a_custom_message() -> None:
    with pytest.raises(CommandError) as exc:
        run(["sh", "-c", "kill -TERM $$"], what="the tool could not do it", timeout=60)
    assert exc.value.message == "the tool could not do it"
    assert "was killed by SIGTERM" in exc.value.details


def test_timeout_named() -> None:
    with pytest.raises(CommandError) as exc:
        run(["sleep", "5"], timeout=0.2)
    assert exc.value.message == '"sleep 5" timed out after 0.2 s'
    assert exc.value.timeout == 0.2
    assert isinstance(exc.value.__cause__, Exception)  # the TimeoutExpired, kept
