"""The runtime rule: identity not spelling, one table, refusals that say what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amber.adapters import runtime
from amber.engine import runtime_rule
from amber.errors import ArchiveError, PreconditionError, RuntimeMismatchError

needs_both = pytest.mark.skipif(
    not (shutil.which("runc") and shutil.which("crun")), reason="needs runc and crun installed (make setup)"
)


@needs_both
@pytest.mark.parametrize("kind", ["runc", "crun"])
def test_same_runtime_any_spelling(kind: str, tmp_path: Path) -> None:
    path = runtime.resolve(kind).path
    link = tmp_path / "alias"
    link.symlink_to(path)
    for spelling in (kind, path, str(link)):
        assert runtime_rule.select_runtime(kind, spelling, "a.tar").kind == kind
        assert runtime_rule.select_runtime(path, spelling, "a.tar").kind == kind


@needs_both
def test_archive_runtime_used_when_none_requested() -> None:
    assert runtime_rule.select_runtime("runc", None, "a.tar").kind == "runc"
    assert runtime_rule.select_runtime("/opt/elsewhere/bin/crun", None, "a.tar").kind == "crun"


@needs_both
def test_incompatible_runtime_refused_with_podman_text() -> None:
    with pytest.raises(RuntimeMismatchError) as exc:
        runtime_rule.select_runtime("crun", "runc", "web.tar.zst")
    assert str(exc.value) == (
        "checkpoint archive web.tar.zst was created with runtime 'crun' and cannot be restored with runtime 'runc'"
    )
    assert exc.value.hint == "leave out --runtime, or give crun"


@needs_both
def test_table_is_the_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runtime_rule.RESTORABLE_BY, "crun", frozenset({"crun", "runc"}))
    assert runtime_rule.select_runtime("crun", "runc", "a.tar").kind == "runc"


def test_runtime_not_installed_lists_installed() -> None:
    with pytest.raises(PreconditionError) as exc:
        runtime_rule.select_runtime("youki", None, "a.tar")
    assert "'youki', which is not installed" in str(exc.value)
    assert "installed:" in str(exc.value)


def test_unknown_requested_runtime() -> None:
    with pytest.raises(PreconditionError, match="'nope' is not installed"):
        runtime_rule.select_runtime("crun", "nope", "a.tar")


def test_archive_without_runtime() -> None:
    with pytest.raises(ArchiveError):
        runtime_rule.select_runtime("", None, "a.tar")


def test_containerd_alias() -> None:
    assert runtime_rule.recorded_kind("io.containerd.runc.v2") == "runc"
