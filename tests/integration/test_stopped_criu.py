"""Issue 10 case 7 on the real stack: a restore whose CRIU leaves a helper stopped (SIGSTOP, as a
ptrace-stopped one) holding every descriptor CRIU had -- the runtime's RPC socket and pipes,
conmon's -- and itself stops. amber must not hang: the restore ends at its bound (120 s) with an
error naming the stuck CRIU, and leaves nothing: no container, mount or process, and the archive
restores again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amber.errors import ExitCode
from tests.conftest import Amber, mounts_under
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above
from tests.integration.test_faults import amber_process

pytestmark = [pytest.mark.root, pytest.mark.slow]

# `criu swrk` (what runc and crun run to restore) replaced: a helper inheriting all of CRIU's
# descriptors stops itself, then CRIU does too. Queries (criu --version, criu check) run the real one.
STOPPED_CRIU = """#!/bin/sh
[ "$1" = swrk ] || exec /usr/sbin/criu "$@"
echo $$ >> {pids}
sh -c 'echo $$ >> {pids}; kill -STOP $$' &
kill -STOP $$
exec /usr/sbin/criu "$@"
"""


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_stopped_criu_holding_the_pipes_ends_the_restore_and_leaves_nothing(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    assert amber("rm", "cnt") == 0
    bindir, pids = tmp_path / "bin", tmp_path / "pids"
    bindir.mkdir()
    (bindir / "criu").write_text(STOPPED_CRIU.format(pids=pids))
    (bindir / "criu").chmod(0o755)
    proc = amber_process(
        amber, "restore", "-i", str(archive), env={"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    )
    try:
        code = proc.wait(300)  # amber's own bound is 120 s; this only keeps a hang from hanging the suite
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    stopped = [int(p) for p in pids.read_text().split()]
    assert len(stopped) == 2, "the runtime did not run criu swrk"
    try:
        assert code == ExitCode.ERROR, err
        assert err.startswith("error: ") and "hint: " in err and "Traceback" not in err, err
        assert "timed out" in err and "CRIU was still there (criu (pid" in err and "stopped" in err, err
        assert [_state(p) for p in stopped] in (["gone", "gone"], ["Z", "Z"], ["gone", "Z"], ["Z", "gone"])
    finally:
        for p in stopped:
            if _state(p) not in ("gone", "Z"):
                os.kill(p, 9)
    engine = amber.fresh_engine()
    assert engine.containers.list(all_containers=True) == []
    assert mounts_under(amber.root) == [] and mounts_under(amber.runroot) == []
    assert not engine.layout.tmp.exists() or list(engine.layout.tmp.iterdir()) == []
    # The archive is as it was: it restores with the real CRIU, and the counter goes on
    assert amber("restore", "-i", str(archive)) == 0
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))
