"""The engines measured: amber and podman, each behind the same small interface (Engine)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from harness import REPO, BenchError, Timed, remove_tree, timed

AMBER = REPO / ".venv" / "bin" / "amber"
IMAGE = "localhost/amber-bench:latest"
# The small-container commands timed one by one, in order (run -d is timed by start()).
SMALL_OPS = ("exec", "ps", "inspect", "checkpoint", "restore", "stop", "rm")


def small_args(op: str, name: str, container: tuple[str, ...]) -> list[str]:
    """The arguments of one small-container command; `container` prefixes checkpoint and restore
    (podman spells them `container checkpoint`)."""
    table = {
        "exec": ["exec", name, "/bin/cat", "/tmp/counter"],
        "ps": ["ps", "-a"],
        "inspect": ["inspect", name],
        "checkpoint": [*container, "checkpoint", name],
        "restore": [*container, "restore", name],
        "stop": ["stop", "-t", "0", name],
        "rm": ["rm", name],
    }
    return table[op]


class Engine(Protocol):
    name: str

    def setup(self, rootfs: Path) -> None: ...
    def start(self, name: str, runtime: str, argv: list[str]) -> Timed: ...
    def upper(self, name: str) -> Path: ...
    def checkpoint(self, name: str, dest: Path, compress: str, level: int | None = None) -> Timed: ...
    def small(self, op: str, name: str) -> Timed: ...
    def restore(self, archive: Path, runtime: str | None = None) -> Timed: ...
    def refused(self, res: Timed) -> bool: ...
    def show(self, archive: Path) -> Timed | None: ...
    def remove(self, name: str) -> None: ...
    def teardown(self) -> list[str]: ...


class Amber:
    name = "amber"

    def __init__(self, work: Path) -> None:
        self.root = work / "amber-root"
        self.runroot = work / "amber-run"
        self.base = [str(AMBER), "--root", str(self.root), "--runroot", str(self.runroot)]
        # Measure amber as installed: bytecode cached (in a private prefix, never in src/).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        self.env.pop("AMBER_ROOT", None)
        self.env.pop("AMBER_RUNROOT", None)
        self.names: set[str] = set()
        self.has_show: bool | None = None

    def run(self, *args: str) -> Timed:
        return timed([*self.base, *args], env=self.env)

    def setup(self, rootfs: Path) -> None:
        self.run("image", "import", str(rootfs), IMAGE).check("amber image import")

    def start(self, name: str, runtime: str, argv: list[str]) -> Timed:
        self.names.add(name)
        # --network none, as podman's containers here: both engines skip netavark.
        return self.run("run", "-d", "--name", name, "--runtime", runtime, "--network", "none", IMAGE, *argv).check(
            "amber run"
        )

    def inspect(self, name: str) -> dict[str, Any]:
        res = self.run("inspect", name).check("amber inspect")
        data = json.loads(res.stdout)
        return dict(data[0] if isinstance(data, list) else data)

    def upper(self, name: str) -> Path:
        return Path(self.inspect(name)["paths"]["upper"])

    def checkpoint(self, name: str, dest: Path, compress: str, level: int | None = None) -> Timed:
        extra = [] if level is None else ["--compress-level", str(level)]
        return self.run("checkpoint", "--print-stats", "--export", str(dest), "--compress", compress, *extra, name)

    def small(self, op: str, name: str) -> Timed:
        return self.run(*small_args(op, name, ()))

    def restore(self, archive: Path, runtime: str | None = None) -> Timed:
        extra = [] if runtime is None else ["--runtime", runtime]
        return self.run("restore", "--print-stats", "--import", str(archive), *extra)

    def refused(self, res: Timed) -> bool:
        return res.returncode == 7

    def show(self, archive: Path) -> Timed | None:
        if self.has_show is False:
            return None
        res = self.run("archive", "show", str(archive))
        if res.returncode == 2 and "invalid choice" in res.stderr:
            self.has_show = False  # the subcommand has not landed yet
            return None
        self.has_show = True
        return res.check("amber archive show")

    def remove(self, name: str) -> None:
        res = self.run("rm", "-f", name)
        if res.returncode not in (0, 3):
            raise BenchError(f"amber rm -f {name} failed: {res.stderr.strip()}")

    def teardown(self) -> list[str]:
        problems = []
        res = self.run("ps", "-a", "-q")
        ids = res.stdout.split() if res.returncode == 0 else sorted(self.names)
        for ref in ids:
            rm = self.run("rm", "-f", ref)
            if rm.returncode not in (0, 3):
                problems.append(f"amber rm -f {ref}: {rm.stderr.strip()}")
        self.run("rmi", IMAGE)
        for d in (self.root, self.runroot):
            problems += remove_tree(d)
        return problems


class Podman:
    name = "podman"

    def __init__(self, work: Path, podman: str) -> None:
        self.top = work / "podman"
        self.base = [podman, "--root", str(self.top / "root"), "--runroot", str(self.top / "run"),
                     "--tmpdir", str(self.top / "tmp"), "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file"]  # fmt: skip
        self.env = dict(os.environ, PODMAN_IGNORE_CGROUPSV1_WARNING="1")
        self.checkpointctl = shutil.which("checkpointctl")

    def run(self, *args: str) -> Timed:
        return timed([*self.base, *args], env=self.env)

    def setup(self, rootfs: Path) -> None:
        self.run("import", str(rootfs), IMAGE).check("podman import")

    def start(self, name: str, runtime: str, argv: list[str]) -> Timed:
        return self.run(
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            runtime,
            "--network",
            "none",
            "--log-driver",
            "k8s-file",
            IMAGE,
            *argv,
        ).check("podman run")

    def upper(self, name: str) -> Path:
        res = self.run("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", name).check("podman inspect")
        return Path(res.stdout.strip())

    def checkpoint(self, name: str, dest: Path, compress: str, level: int | None = None) -> Timed:
        if level is not None:
            raise BenchError("podman has no compression level option: level cells measure amber only")
        return self.run("container", "checkpoint", "--print-stats", "--export", str(dest), "--compress", compress, name)

    def small(self, op: str, name: str) -> Timed:
        return self.run(*small_args(op, name, ("container",)))

    def restore(self, archive: Path, runtime: str | None = None) -> Timed:
        if runtime is None:
            return self.run("container", "restore", "--print-stats", "--import", str(archive))
        return timed([*self.base, "--runtime", runtime, "container", "restore", "--import", str(archive)], env=self.env)

    def refused(self, res: Timed) -> bool:
        return res.returncode != 0 and "cannot be restored with runtime" in res.stderr

    def show(self, archive: Path) -> Timed | None:
        if self.checkpointctl is None:
            return None
        return timed([self.checkpointctl, "show", str(archive)]).check("checkpointctl show")

    def remove(self, name: str) -> None:
        self.run("rm", "-f", "-t", "0", "--ignore", name).check("podman rm")

    def teardown(self) -> list[str]:
        problems = []
        if self.top.exists():
            rm = self.run("rm", "-a", "-f", "-t", "0")
            if rm.returncode != 0:
                problems.append(f"podman rm -a: {rm.stderr.strip()}")
            self.run("rmi", "-a", "-f")
            problems += remove_tree(self.top)
        return problems
