"""The probe cache with the real runtimes, as separate commands: a runtime's `--version` is
answered from amber's run root while the binary is unchanged, asked again when it changes, and
a cache file that is not amber's alone is not believed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Amber

pytestmark = pytest.mark.root


def _info(amber: Amber, path: str) -> str:
    env = {**os.environ, "PATH": path}
    argv = [sys.executable, "-m", "amber", "--root", str(amber.root), "--runroot", str(amber.runroot), "info"]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=120)
    return res.stdout


def _runtime_line(out: str, binary: Path) -> str:
    (line,) = [ln for ln in out.splitlines() if ln.startswith("runtime:") and str(binary) in ln]
    return line


def test_runtime_version_is_cached_per_binary(amber: Amber, runtime: str, tmp_path: Path) -> None:
    real = shutil.which(runtime)
    assert real is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = bindir / runtime
    shutil.copy2(real, binary)  # a binary of the test's own, to touch
    path = f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    asked = _runtime_line(_info(amber, path), binary)
    assert f"{runtime} " in asked and "(checkpoint: yes)" in asked

    probes = amber.runroot / "probes"
    assert probes.stat().st_mode & 0o777 == 0o700
    (entry,) = [p for p in probes.iterdir() if json.loads(p.read_text())["key"][0] == str(binary)]
    stored = json.loads(entry.read_text())
    kind, version, criu = stored["answer"]
    assert (kind, criu) == (runtime, True) and version in asked
    stored["answer"] = [kind, "0.0-from-the-cache", criu]
    entry.write_text(json.dumps(stored))  # as amber would have kept it: private, same key
    assert "0.0-from-the-cache" in _runtime_line(_info(amber, path), binary)

    entry.chmod(0o644)  # not amber's alone: not believed, asked again and kept privately
    assert _runtime_line(_info(amber, path), binary) == asked
    assert entry.stat().st_mode & 0o777 == 0o600

    entry.write_text(json.dumps(stored))
    entry.chmod(0o600)
    assert "0.0-from-the-cache" in _runtime_line(_info(amber, path), binary)
    st = binary.stat()
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the binary changed
    assert _runtime_line(_info(amber, path), binary) == asked
