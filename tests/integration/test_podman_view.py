"""Real containers under runc and crun: podman's inspect fields and --format, ps --format/--filter,
--latest, checkpoint -a/restore -a printing ids, and archive inspect by a user who is not root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, Amber

pytestmark = pytest.mark.root


def _out(amber: Amber, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert amber(*argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_inspect_format_and_checkpoint_fields(
    amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = _out(amber, capsys, "run", "-d", "--name", "insp", "--runtime", runtime, demo_image, "sleep", "1000").strip()
    fmt = "{{.State.Status}}:{{.State.Running}}:{{.State.Paused}}:{{.State.Checkpointed}}"
    assert _out(amber, capsys, "inspect", "--format", fmt, "insp") == "running:true:false:false\n"
    assert _out(amber, capsys, "inspect", "--format", "{{.Name}} {{.Id}} {{.OCIRuntime}}", cid) == (
        f"insp {cid} {runtime}\n"
    )
    pid = int(_out(amber, capsys, "inspect", "-f", "{{.State.Pid}}", "insp"))
    assert Path(f"/proc/{pid}").exists()
    assert _out(amber, capsys, "checkpoint", "insp") == "insp\n"
    assert _out(amber, capsys, "inspect", "--format", fmt, "insp") == "exited:false:false:true\n"
    data = json.loads(_out(amber, capsys, "inspect", "insp"))[0]
    assert data["State"]["CheckpointedAt"].startswith("20")
    assert data["State"]["CheckpointPath"].endswith("/checkpoint")
    assert data["Config"]["Cmd"] == ["sleep", "1000"]
    assert data["ImageName"] == demo_image and data["name"] == "insp"  # amber's own keys stay
    assert _out(amber, capsys, "restore", "insp") == "insp\n"
    fmt2 = fmt + ":{{.State.Restored}}"
    assert _out(amber, capsys, "inspect", "--format", fmt2, "insp") == "running:true:false:false:true\n"
    assert amber("inspect", "--format", "{{range .Config.Env}}{{end}}", "insp") == 2
    assert "unsupported format template" in capsys.readouterr().err


def test_ps_format_filter_latest(
    amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _out(amber, capsys, "run", "-d", "--name", "psa", "--runtime", runtime, demo_image, "sleep", "1000").strip()
    _out(amber, capsys, "create", "--name", "psb", "--runtime", runtime, demo_image, "sleep", "1")
    assert _out(amber, capsys, "ps", "--format", "{{.Names}} {{.ID}}") == f"psa {a[:12]}\n"
    assert _out(amber, capsys, "ps", "-a", "--no-trunc", "--format", "{{.ID}}").split() == [
        a,
        amber.engine.containers.store.get("psb").id,
    ]
    assert _out(amber, capsys, "ps", "-a", "--filter", "status=created", "--format", "{{.Names}}") == "psb\n"
    assert _out(amber, capsys, "ps", "-a", "--filter", "name=ps", "--filter", "status=running", "-q") == f"{a[:12]}\n"
    assert _out(amber, capsys, "ps", "-a", "-f", f"ancestor={demo_image}", "--format", "{{.Names}}").split() == [
        "psa",
        "psb",
    ]
    assert _out(amber, capsys, "ps", "-l", "--format", "{{.Names}}") == "psb\n"
    rows = json.loads(_out(amber, capsys, "ps", "--format", "json"))
    assert [r["Names"] for r in rows] == [["psa"]] and rows[0]["State"] == "running"
    table = _out(amber, capsys, "ps", "--format", "table {{.ID}} {{.Names}}").splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAMES"] and table[1] == f"{a[:12]} psa"
    assert amber("ps", "--filter", "colour=red") == 2
    # --latest on the other commands
    latest = amber.engine.containers.store.get("psb").id
    assert _out(amber, capsys, "inspect", "-l", "--format", "{{.Name}}") == "psb\n"
    assert _out(amber, capsys, "rm", "-l") == f"{latest}\n"
    assert _out(amber, capsys, "stop", "-l", "-t", "1") == f"{a}\n"


def test_checkpoint_and_restore_all_print_ids(
    amber: Amber, demo_image: str, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one = _out(amber, capsys, "run", "-d", "--runtime", runtime, demo_image, "sleep", "1000").strip()
    two = _out(amber, capsys, "run", "-d", "--name", "named", "--runtime", runtime, demo_image, "sleep", "1000").strip()
    assert sorted(_out(amber, capsys, "checkpoint", "-a").split()) == sorted([one, two])
    assert sorted(_out(amber, capsys, "restore", "-a").split()) == sorted([one, two])
    assert _out(amber, capsys, "checkpoint", "-l") == f"{two}\n"
    assert _out(amber, capsys, "restore", "--latest") == f"{two}\n"
    assert _out(amber, capsys, "inspect", "-f", "{{.State.Status}}", one, "named") == "running\nrunning\n"


def test_archive_inspect_as_a_user_who_is_not_root() -> None:
    runuser = shutil.which("runuser")
    assert runuser is not None, "runuser (util-linux) is needed"
    with tempfile.TemporaryDirectory(prefix="amber-nonroot-") as d:  # /tmp: others can reach it
        Path(d).chmod(0o755)
        archive = Path(d) / "counter.tar.zst"
        shutil.copy(FIXTURES / "counter-crun.tar.zst", archive)
        archive.chmod(0o644)
        env = {"PYTHONPATH": str(REPO / "src"), "HOME": d, "PATH": "/usr/bin:/bin", "TMPDIR": d}
        for argv in (["inspect", "--all"], ["show"], ["memparse"]):
            done = subprocess.run(
                [runuser, "-u", "nobody", "--", sys.executable, "-m", "amber", "archive", *argv, str(archive)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert "counter-crun" in done.stdout or "sleep" in done.stdout


def _amber_on_pty(amber: Amber, *argv: str) -> tuple[int, str, str]:
    """Run amber in a child whose stderr is a terminal (a pty); (exit code, stdout, the pty's text)."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot), *argv],
            stdout=subprocess.PIPE,
            stderr=slave,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        out = child.stdout.read().decode() if child.stdout else ""
        return child.wait(timeout=120), out, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_progress_bar_on_a_terminal_only(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    assert amber("run", "-d", "--name", "prog", "--runtime", runtime, demo_image, "sleep", "1000") == 0
    archive = tmp_path / "prog.tar.zst"
    rc, out, tty = _amber_on_pty(amber, "checkpoint", "--export", str(archive), "prog")
    assert rc == 0, tty
    assert out == "prog\n"
    assert "\rexporting [" in tty.replace("\x1b[K", "") and "/s" in tty and "left" in tty
    assert amber("rm", "-f", "prog") == 0
    rc, out, tty = _amber_on_pty(amber, "restore", "--import", str(archive))
    assert rc == 0, tty
    assert "importing [" in tty and out.strip() == amber.engine.containers.store.get("prog").id
    assert amber("rm", "-f", "prog") == 0
    rc, _, tty = _amber_on_pty(amber, "restore", "-q", "--import", str(archive))
    assert rc == 0 and "importing" not in tty  # --quiet
    # not a terminal: nothing drawn
    assert amber("rm", "-f", "prog") == 0
    done = subprocess.run(
        [sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot)]
        + ["restore", "--import", str(archive)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "importing" not in done.stderr
