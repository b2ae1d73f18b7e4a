"""conmon, the container monitor podman and CRI-O use.

conmon holds the container's stdio pipes, writes the k8s-file log, records the exit code in the
exit directory and daemonizes, so no amber process stays resident per container. It runs
`<runtime> create` (or `<runtime> restore --detach` with --restore) and reports the container's
PID, or the runtime's error, on the sync pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from amber.adapters.run import find_tool, spawn
from amber.adapters.runtime import Runtime
from amber.errors import AmberError


@dataclass(frozen=True)
class MonitorSpec:
    cid: str
    name: str
    bundle: Path
    log_path: Path
    exit_dir: Path
    pidfile: Path  # the container's init PID
    conmon_pidfile: Path
    socket_dir: Path
    exit_command: Sequence[str] = ()  # run by conmon when the container exits (--rm's cleanup)


class ConmonError(AmberError):
    pass


def _read_sync(fd: int, timeout: float) -> list[dict[str, object]]:
    """Read the JSON messages conmon writes to the sync pipe until it closes or we have a pid."""
    deadline = time.monotonic() + timeout
    buf = b""
    messages: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf or buf.strip().endswith(b"}"):
            line, _, buf = buf.partition(b"\n") if b"\n" in buf else (buf, b"", b"")
            if line.strip():
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(msg, dict):
                    messages.append(msg)
                    if "data" in msg:
                        return messages
            if not buf:
                break
    return messages


@dataclass(frozen=True)
class ExecSpec:
    """One exec session: conmon runs `<runtime> exec --process SPEC` with its own pipes."""

    cid: str
    session: str  # the session's id (conmon's -u)
    name: str
    bundle: Path  # the container's bundle
    process_spec: Path  # the OCI process (args, env, cwd, user) as JSON
    log_path: Path
    exit_dir: Path  # conmon writes <exit_dir>/<cid> with the exit code: one directory a session
    pidfile: Path
    conmon_pidfile: Path
    socket_dir: Path  # conmon makes <socket_dir>/<session>/attach (stdin goes in there)
    stdin: bool = False


def _common_argv(runtime: Runtime, spec: MonitorSpec | ExecSpec, *, uuid: str) -> list[str]:
    """conmon's command line for a container (MonitorSpec) or an exec session (ExecSpec)."""
    conmon = find_tool("conmon", "supervise containers")
    spec.socket_dir.mkdir(parents=True, exist_ok=True)
    spec.exit_dir.mkdir(parents=True, exist_ok=True)
    return [
        conmon,
        "--api-version",
        "1",
        "-c",
        spec.cid,
        "-u",
        uuid,
        "-n",
        spec.name,
        "-r",
        runtime.info.path,
        "-b",
        str(spec.bundle),
        "-p",
        str(spec.pidfile),
        "-P",
        str(spec.conmon_pidfile),
        "-l",
        f"k8s-file:{spec.log_path}",
        "--exit-dir",
        str(spec.exit_dir),
        "--socket-dir-path",
        str(spec.socket_dir),
        "--log-level",
        "error",
        "--runtime-arg",
        "--root",
        "--runtime-arg",
        str(runtime.state_root),
        "--runtime-arg",
        "--log-format=json",
        "--runtime-arg",
        f"--log={spec.bundle / 'oci-log'}",
    ]


def _spawn_and_sync(argv: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Start conmon with a sync pipe; (the PID it reports, its message). The caller's stdio is
    never handed on: conmon gets /dev/null and makes the container's pipes itself."""
    read_fd, write_fd = os.pipe()
    try:
        proc = spawn(argv, env={**(env or {}), "_OCI_SYNCPIPE": str(write_fd)}, pass_fds=(write_fd,), cwd=cwd)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    # conmon's first process exits at once (it forks); its child keeps the sync pipe.
    os.close(write_fd)
    try:
        messages = _read_sync(read_fd, timeout)
    finally:
        os.close(read_fd)
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - the daemonized child carries on; we only reap the parent
            pass
    pid = -1
    message = ""
    for msg in messages:
        data = msg.get("data")
        if isinstance(data, int):
            pid = data
        if isinstance(msg.get("message"), str):
            message = str(msg["message"])
    return pid, message


def start_monitor(
    runtime: Runtime,
    spec: MonitorSpec,
    *,
    restore_from: Path | None = None,
    runtime_opts: Sequence[str] = (),
    criu_config: Path | None = None,
    timeout: float = 120.0,
) -> int:
    """Start conmon for a container; returns the container's PID once created (or restored).

    `criu_config`: a CRIU configuration file for the restore, handed down to CRIU through the
    environment (CRIU_CONFIG_FILE: conmon, the runtime and `criu swrk` pass it on).
    Raises ConmonError (with the runtime's own error lines) when there is no container."""
    argv = _common_argv(runtime, spec, uuid=spec.cid)
    with contextlib.suppress(FileNotFoundError):
        (spec.bundle / "oci-log").unlink()
    if spec.exit_command:
        argv += ["--exit-command", spec.exit_command[0]]
        for arg in spec.exit_command[1:]:
            argv += ["--exit-command-arg", arg]
    if restore_from is not None:
        argv += ["--restore", str(restore_from)]
        for opt in runtime_opts:
            argv += ["--runtime-opt", opt]
    env = {"CRIU_CONFIG_FILE": str(criu_config)} if criu_config is not None else {}
    started = time.monotonic()
    pid, message = _spawn_and_sync(argv, spec.bundle, timeout, env=env)
    if pid <= 0:
        verb = "restore" if restore_from is not None else "create"
        timed_out = not message and time.monotonic() - started >= timeout
        stuck = still_running(spec) if timed_out else []
        criu = [p for p in stuck if p.startswith("criu ")]
        raise ConmonError(
            f"{runtime.info.kind} could not {verb} container {spec.name}"
            + (f": conmon and {runtime.info.kind} gave no answer in {timeout:g} s (timed out)" if timed_out else "")
            + (f"; CRIU was still there ({', '.join(criu)})" if criu else ""),
            hint=None,
            details=[
                *(_runtime_errors(spec.bundle / "oci-log", message) or ["conmon reported no container PID"]),
                *([f"still running under conmon: {', '.join(stuck)}"] if stuck else []),
            ],
        )
    return pid


_STATES = {"T": "stopped", "t": "stopped by a tracer", "D": "in uninterruptible sleep", "Z": "a zombie"}


def still_running(spec: MonitorSpec) -> list[str]:
    """What runs under the container's conmon, each as "NAME (pid N[, STATE])"; [] without one."""
    try:
        root = int(spec.conmon_pidfile.read_text().strip())
    except (OSError, ValueError):
        return []
    out = []
    for pid in reversed(_descendants(root)):
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        name, state = head.split("(", 1)[1], rest.split()[0]
        out.append(f"{name} (pid {pid}" + (f", {_STATES[state]})" if state in _STATES else ")"))
    return out


def start_exec(runtime: Runtime, spec: ExecSpec, *, timeout: float = 60.0) -> int:
    """Run a process in a running container under conmon (podman's exec): the process gets
    conmon's pipes, its output goes to the session's log, its exit code to the exit file.
    Returns the process's PID. Raises ConmonError when the runtime could not start it."""
    argv = _common_argv(runtime, spec, uuid=spec.session)
    argv[argv.index(f"--log={spec.bundle / 'oci-log'}")] = f"--log={spec.log_path.parent / 'oci-log'}"
    argv += ["--exec", "--exec-process-spec", str(spec.process_spec), *(["--stdin"] if spec.stdin else [])]
    pid, message = _spawn_and_sync(argv, spec.log_path.parent, timeout)
    if pid <= 0:
        raise ConmonError(
            f"{runtime.info.kind} could not run the command in container {spec.name}",
            hint="is the command in the container's image? amber exec NAME ls /bin shows what is there",
            details=_runtime_errors(spec.log_path.parent / "oci-log", message) or ["conmon reported no PID"],
        )
    return pid


def attach_socket(socket_dir: Path, uuid: str) -> Path:
    """Where conmon listens for the session's stdin (SOCK_SEQPACKET)."""
    return socket_dir / uuid / "attach"


def _runtime_errors(oci_log: Path, message: str) -> list[str]:
    """The runtime's own error lines (its JSON log), else conmon's message."""
    lines: list[str] = []
    with contextlib.suppress(OSError):
        for raw in oci_log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    lines.append(str(entry.get("msg", "")).strip())
    if not lines:
        lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-12:]


def stop_monitor(spec: MonitorSpec) -> None:
    """Kill conmon and everything it started (runtime, CRIU) if it is still there.

    A restore that failed or timed out can leave `runtime restore` and CRIU running under conmon.
    """
    try:
        pid = int(spec.conmon_pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    for victim in [*_descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """PIDs below `root`, deepest first (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []

    def walk(pid: int) -> None:
        for child in children.get(pid, []):
            walk(child)
            out.append(child)

    walk(root)
    return out
