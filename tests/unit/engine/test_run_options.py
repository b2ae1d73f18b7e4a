"""The run options' parsing (podman's units and spellings), users, exec's process spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.engine.exec_session import ExecOptions, ExecRequest, process_spec
from amber.engine.run_options import (
    RunOptions,
    make_options,
    parse_labels,
    parse_memory,
    read_env_file,
    signal_name,
    signal_number,
)
from amber.engine.users import User, resolve
from amber.errors import NotFoundError, UsageError


def test_memory_units() -> None:
    assert parse_memory("64m") == 64 * 1024**2
    assert parse_memory("1g") == 1024**3
    assert parse_memory("1.5G") == int(1.5 * 1024**3)
    assert parse_memory("10485760") == 10485760
    assert parse_memory("512mb") == 512 * 1024**2
    for bad in ("lots", "-1m", "1x", "1k"):  # 1k: under podman's 6m floor
        with pytest.raises(UsageError):
            parse_memory(bad)


def test_labels_signals_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_labels(["a=1", "b", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(UsageError):
        parse_labels(["=v"])
    assert [signal_name(s) for s in ("TERM", "sigint", "9", "SIGUSR1")] == ["TERM", "INT", "KILL", "USR1"]
    assert signal_number("TERM") == 15 and signal_number("NOPE") == 0
    with pytest.raises(UsageError, match="unknown signal"):
        signal_name("NOPE")
    env = tmp_path / "e.env"
    monkeypatch.setenv("FROM_HOST", "h")
    env.write_text("# comment\nA=1\n\n  B=two words  \nFROM_HOST\nUNSET_HERE\n")
    assert read_env_file(env) == ["A=1", "B=two words", "FROM_HOST=h"]
    with pytest.raises(NotFoundError):
        read_env_file(tmp_path / "missing")


def test_options_validate_and_resources() -> None:
    opts = make_options(memory="64m", cpus=1.5, pids_limit=20, labels={"k": "v"}, stop_signal="usr1")
    assert opts.resources() == {
        "memory": {"limit": 64 * 1024**2},
        "cpu": {"quota": 150000, "period": 100000},
        "pids": {"limit": 20},
    }
    assert opts.stop_signal_name() == "USR1"
    assert RunOptions().resources() == {}
    for bad in (
        {"ipc": "host"},
        {"ipc": "container:"},  # container:NAME joins NAME (ipc_share); no name is refused
        {"cpus": 0.0},
        {"pids_limit": 0},
        {"stop_timeout": -1.0},
        {"hostname": "bad host"},
    ):
        with pytest.raises(UsageError):
            make_options(**bad)


def test_users_resolve_names_and_numbers(tmp_path: Path) -> None:
    top, base = tmp_path / "top", tmp_path / "base"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:34::/var/www:/bin/sh\n")
    (base / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    roots = [top, base]  # the top layer has no /etc: the lower one's files count
    assert resolve("web", roots) == User(33, 34)
    assert resolve("web:staff", roots) == User(33, 50)
    assert resolve("33", roots) == User(33, 34)
    assert resolve("1000:1001", roots) == User(1000, 1001)
    assert resolve("1000", roots) == User(1000, 0)
    for bad in ("nobody", "web:nogroup", ":5"):
        with pytest.raises(UsageError):
            resolve(bad, roots)


def test_exec_process_spec_keeps_the_containers_process() -> None:
    spec = {
        "process": {
            "args": ["sleep", "1"],
            "env": ["PATH=/bin", "A=1"],
            "cwd": "/srv",
            "user": {"uid": 5, "gid": 5},
            "capabilities": {"bounding": ["CAP_KILL"]},
            "apparmorProfile": "x",
        }
    }
    proc = process_spec(spec, ExecRequest(argv=["sh"], options=ExecOptions(env=["A=2", "B=3"])))
    assert proc["args"] == ["sh"] and proc["cwd"] == "/srv" and proc["user"] == {"uid": 5, "gid": 5}
    assert "A=2" in proc["env"] and "B=3" in proc["env"] and "A=1" not in proc["env"]
    assert proc["capabilities"] == {"bounding": ["CAP_KILL"]} and "apparmorProfile" not in proc
    proc = process_spec(spec, ExecRequest(argv=["id"], options=ExecOptions(workdir="/tmp"), user=User(7, 8, [9])))
    assert proc["cwd"] == "/tmp" and proc["user"] == {"uid": 7, "gid": 8, "additionalGids": [9]}
    assert spec["process"]["args"] == ["sleep", "1"]  # the container's own spec is untouched


def test_exec_output_comes_back_exactly(tmp_path: Path) -> None:
    from amber.engine.exec_session import follow_records

    log = tmp_path / "exec.log"
    log.write_text(
        "2026-01-01T00:00:00Z stdout F hello\n"
        "2026-01-01T00:00:00Z stderr F oops\n"
        "2026-01-01T00:00:00Z stdout P sh\x00-c\x00i=0\x0bx\n"
        "2026-01-01T00:00:00Z stdout F \n"
        "2026-01-01T00:00:00Z stdout P no newline\n"
    )
    got = list(follow_records(log, lambda: False))
    assert got == [
        ("stdout", "hello\n"),
        ("stderr", "oops\n"),
        ("stdout", "sh\x00-c\x00i=0\x0bx"),
        ("stdout", "\n"),
        ("stdout", "no newline"),
    ]
    assert list(follow_records(tmp_path / "none", lambda: False)) == []
