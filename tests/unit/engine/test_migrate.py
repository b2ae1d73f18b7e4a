"""amber migrate's logic without hosts: the destination URL, ssh's command line, the options'
rules, the control channel's messages, and the destination's preflight refusals."""

from __future__ import annotations

import io
import json
import os

import pytest

from amber.engine import migrate_receive
from amber.engine.migrate import MigrateOptions
from amber.engine.migrate_channel import SshDest, peer_error, ssh_argv
from amber.errors import ConflictError, ExitCode, PreconditionError, UsageError


def test_destination_url_forms() -> None:
    assert SshDest.parse("ssh://h") == SshDest("h")
    assert SshDest.parse("ssh://root@10.0.0.2:2222") == SshDest("10.0.0.2", "root", 2222)
    assert str(SshDest.parse("ssh://u@h:22")) == "ssh://u@h:22"


@pytest.mark.parametrize("bad", ["h", "http://h", "ssh://", "ssh://h:x", "ssh://h/path"])
def test_destination_url_refused(bad: str) -> None:
    with pytest.raises(UsageError) as err:
        SshDest.parse(bad)
    assert err.value.hint and "ssh://" in err.value.hint


def test_ssh_argv_passes_identity_options_and_one_remote_command() -> None:
    argv = ssh_argv(
        SshDest("h", "u", 2222), ["amber", "--root", "/a b", "migrate-receive"], identity="/k", options=["X=1"]
    )
    assert argv[:2] == ["ssh", "-T"]
    assert "BatchMode=yes" in argv
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-i") + 1] == "/k"
    assert "X=1" in argv
    assert argv[-3:] == ["u@h", "--", "amber --root '/a b' migrate-receive"]


def test_unknown_mode_and_empty_remote_amber_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        MigrateOptions(SshDest("h"), mode="warp").validate()
    with pytest.raises(UsageError):
        MigrateOptions(SshDest("h"), remote_amber="  ").validate()


def test_remote_command_appends_migrate_receive() -> None:
    opts = MigrateOptions(SshDest("h"), remote_amber="env X=1 amber --root /r")
    assert opts.remote() == ["env", "X=1", "amber", "--root", "/r", "migrate-receive"]


def test_pre_copy_refused_without_dirty_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("amber.adapters.criu.dirty_tracking", lambda: False)
    with pytest.raises(PreconditionError) as err:
        MigrateOptions(SshDest("h"), pre_copy=True).validate()
    assert "does not track dirty memory" in err.value.message


def test_peer_error_keeps_the_destinations_kind_and_exit_code() -> None:
    exc = peer_error({"ok": False, "error": "name taken", "hint": "remove it", "exit": 4}, SshDest("h"))
    assert isinstance(exc, ConflictError)
    assert exc.exit_code == ExitCode.CONFLICT
    assert "ssh://h" in exc.message and exc.hint == "remove it"


def test_receiver_answers_a_foreign_request_with_an_error_line() -> None:
    out = io.BytesIO()
    code = migrate_receive.receive(None, io.BytesIO(b'{"op": "hello"}\n'), out)  # type: ignore[arg-type]
    answer = json.loads(out.getvalue())
    assert code == ExitCode.USAGE
    assert answer["ok"] is False and answer["hint"]


def test_receiver_answers_garbage_with_an_error_line() -> None:
    out = io.BytesIO()
    code = migrate_receive.receive(None, io.BytesIO(b"not json\n"), out)  # type: ignore[arg-type]
    assert code == ExitCode.USAGE
    assert json.loads(out.getvalue())["ok"] is False


class _Removes:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, container: str, *, force: bool = False) -> None:
        self.removed.append(container)


def _pipe_with(data: bytes) -> io.BufferedReader:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return open(r, "rb")  # noqa: SIM115 - closed by the caller's with


def test_destination_keeps_the_container_only_on_done() -> None:
    engine, out = _Removes(), io.BytesIO()
    with _pipe_with(b'{"op": "done"}\n') as stdin:
        assert migrate_receive._commit_or_roll_back(engine, "cid", stdin, out) == 0  # type: ignore[arg-type]
    assert engine.removed == []
    assert json.loads(out.getvalue())["event"] == "committed"


def test_destination_removes_the_container_when_the_source_goes_silent() -> None:
    engine, out = _Removes(), io.BytesIO()
    with _pipe_with(b"") as stdin:  # the channel closed: the source runs it again
        assert migrate_receive._commit_or_roll_back(engine, "cid", stdin, out) == 1  # type: ignore[arg-type]
    assert engine.removed == ["cid"]
