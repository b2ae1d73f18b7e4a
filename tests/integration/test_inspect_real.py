"""Inspection of amber's own archives made on the real stack, and TCP servers across checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from amber.adapters.run import run
from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import Amber
from tests.integration.test_checkpoint import start_counter
from tests.integration.test_containers import wait_for

pytestmark = pytest.mark.root

HTTPD = "echo listening; exec httpd -f -p 127.0.0.1:8080 -h /var/www"


def serving(amber: Amber, name: str, capfd: pytest.CaptureFixture[str]) -> bool:
    capfd.readouterr()
    code = amber("exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html")
    return code == 0 and "<h1>amber</h1>" in capfd.readouterr().out


def test_tcp_server_survives_and_is_inspected(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    amber.engine.containers.run(
        demo_image, ["sh", "-c", HTTPD], name="web", runtime_name=runtime, env=["SECRET_TOKEN=amber-marker-42"]
    )
    assert wait_for(lambda: serving(amber, "web", capfd))
    archive = tmp_path / "web.tar.zst"
    assert amber("checkpoint", "-e", str(archive), "web") == 0
    capfd.readouterr()

    assert amber("archive", "inspect", str(archive), "--all", "--format", "json") == 0
    data = json.loads(capfd.readouterr().out)
    entry = data[0] if isinstance(data, list) else data
    assert entry["container_name"] == "web" and entry["runtime"] == runtime
    sockets = json.dumps(entry.get("sockets"))
    assert "LISTEN" in sockets and "8080" in sockets
    assert entry["process_tree"]["environment_variables"]["SECRET_TOKEN"] == "amber-marker-42"

    assert amber("archive", "memparse", str(archive), "--pid", "1", "--search", "amber-marker-42") == 0
    assert "amber-marker-42" in capfd.readouterr().out

    assert amber("archive", "show", str(archive)) == 0
    out = capfd.readouterr().out
    assert "web" in out and runtime in out and demo_image in out

    if shutil.which("checkpointctl"):
        theirs = json.loads(
            run(["checkpointctl", "inspect", str(archive), "--all", "--format", "json"], timeout=60).stdout
        )
        theirs = theirs[0] if isinstance(theirs, list) else theirs
        for key in ("container_name", "image", "id", "runtime", "engine"):
            assert entry[key] == theirs[key], key
        assert entry["checkpoint_size"]["memory_pages_size"] == theirs["checkpoint_size"]["memory_pages_size"]

    assert amber("rm", "web") == 0
    assert amber("restore", "-i", str(archive)) == 0
    assert wait_for(lambda: serving(amber, "web", capfd))  # the LISTEN socket came back


def test_archive_check_reports_runtime_and_missing_image(
    amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_counter(amber, demo_image, "crun")
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    capsys.readouterr()
    assert amber("archive", "check", str(archive), "--runtime", "runc") == ExitCode.ERROR
    out = capsys.readouterr().out
    assert "crun" in out and "runc" in out
    other = Amber(tmp_path / "r2", tmp_path / "rr2")
    try:
        assert other("archive", "check", str(archive)) == ExitCode.ERROR
        got = capsys.readouterr()
        assert "localhost/demo:latest" in got.out and "amber image import" in got.err
    finally:
        other.cleanup()


def test_print_stats_and_all(amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start_counter(amber, demo_image, "crun", name="a1")
    start_counter(amber, demo_image, "runc", name="a2")
    capsys.readouterr()
    assert amber("checkpoint", "--all", "--export", str(tmp_path / "all.tar.zst"), "--print-stats") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["podman_checkpoint_duration"] > 0
    assert {s["Id"][:12] for s in stats["container_statistics"]} == {
        amber.engine.containers.store.get(n).id[:12] for n in ("a1", "a2")
    }
    assert all(s["criu_statistics"].get("pages_written", 0) > 0 for s in stats["container_statistics"])
    archives = sorted(p.name for p in tmp_path.glob("all-*.tar.zst"))
    assert archives == ["all-a1.tar.zst", "all-a2.tar.zst"]  # one per container, none overwritten
    assert amber("rm", "a1") == 0
    capsys.readouterr()
    assert amber("restore", "-i", str(tmp_path / "all-a1.tar.zst"), "--print-stats") == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["container_statistics"][0]["runtime_restore_duration"] > 0
    assert amber.fresh_engine().containers.inspect_record("a1").status == Status.RUNNING
