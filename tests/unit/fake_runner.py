"""A fake Runner: tools that answer from a table, so runtime and CRIU logic runs without root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from amber.adapters.run import PathArg, Result

CRUN_VERSION = "crun version 1.21\ncommit: 10269840aa07fb7e6b7e1acff6198692d8ff5c88\nrundir: /run/crun\n"
CRUN_FEATURES = "spec: 1.0.0\n+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +CRIU +YAJL\n"
RUNC_VERSION = "runc version 1.1.15+ds1\ncommit: 1.1.15+ds1-2\nspec: 1.1.0\ngo: go1.23.2\nlibseccomp: 2.5.5\n"


class FakeRunner:
    """`tools`: name -> absolute path; `outputs`: argv -> stdout (any other argv fails)."""

    def __init__(self, tools: Mapping[str, str], outputs: Mapping[tuple[str, ...], str]) -> None:
        self.tools = dict(tools)
        self.outputs = dict(outputs)
        self.calls: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str],
        cwd: PathArg | None = None,
        timeout: float | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Result:
        self.calls.append(list(argv))
        out = self.outputs.get(tuple(argv))
        if out is None:
            return Result(list(argv), 1, "", f"{argv[0]}: not faked")
        return Result(list(argv), 0, out, "")

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: PathArg | None = None,
        pass_fds: Sequence[int] = (),
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        raise AssertionError(f"the fake runner starts no process: {argv}")

    def call(self, argv: Sequence[str], *, env: Mapping[str, str]) -> int:
        raise AssertionError(f"the fake runner runs no process: {argv}")

    def which(self, name: str) -> str | None:
        if "/" in name:
            return name if os.path.realpath(name) in self.tools.values() else None
        return self.tools.get(name)


def stack(*, crun_criu: bool = True, runc: bool = True, crun: bool = True) -> FakeRunner:
    """A host with CRIU 4.2.1 (no dirty-memory tracking) and the runtimes asked for."""
    tools = {"criu": "/fake/sbin/criu"}
    outputs: dict[tuple[str, ...], str] = {("/fake/sbin/criu", "--version"): "Version: 4.2.1\n"}
    if crun:
        tools["crun"] = "/fake/bin/crun"
        features = CRUN_FEATURES if crun_criu else CRUN_FEATURES.replace(" +CRIU", "")
        outputs[("/fake/bin/crun", "--version")] = CRUN_VERSION + features
    if runc:
        tools["runc"] = "/fake/sbin/runc"
        outputs[("/fake/sbin/runc", "--version")] = RUNC_VERSION
    return FakeRunner(tools, outputs)
