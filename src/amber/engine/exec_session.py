"""exec as podman does it: conmon runs `<runtime> exec --process SPEC`, so the process gets
conmon's pipes and never the caller's file descriptors (a daemon started by exec then holds
nothing of the host, and a checkpoint goes through). Output goes to the session's k8s-file log,
which the caller follows; stdin (-i) goes in through conmon's attach socket.
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from amber.adapters import conmon
from amber.adapters.runtime import Runtime
from amber.adapters.state import atomic_write_json
from amber.engine import exit_codes
from amber.engine.spec import merge_env
from amber.engine.users import User
from amber.errors import AmberError
from amber.layout import ContainerLayout, Layout


@dataclass(frozen=True)
class ExecOptions:
    """podman's exec options (-e, -w, -t, -u, -i, -d): Engine.exec's keywords, built once and
    taken by ContainerService.exec."""

    env: Sequence[str] = ()  # KEY=VALUE, over the container's
    workdir: str | None = None  # default: the container's
    tty: bool = False  # the runtime runs it on our terminal (not under conmon)
    user: str | None = None  # USER[:GROUP], looked up in the container's root
    interactive: bool = False  # our stdin goes to it
    detach: bool = False  # return once it runs


@dataclass(frozen=True)
class ExecRequest:
    """What to run: the command, the options, and the user they name, looked up."""

    argv: Sequence[str]
    options: ExecOptions = ExecOptions()
    user: User | None = None


def process_spec(container_spec: dict[str, Any], req: ExecRequest) -> dict[str, Any]:
    """The OCI process of an exec session: the container's own process (capabilities, user,
    rlimits, working directory) with the command, env, cwd and user asked for."""
    proc = copy.deepcopy(container_spec.get("process") or {})
    proc["args"] = list(req.argv)
    proc["terminal"] = False
    proc["env"] = merge_env([str(e) for e in proc.get("env") or []], req.options.env)
    proc["cwd"] = req.options.workdir or str(proc.get("cwd") or "/")
    if req.user is not None:
        proc["user"] = req.user.to_spec()
    proc.pop("apparmorProfile", None)
    proc.pop("selinuxLabel", None)
    return proc


@dataclass(frozen=True)
class Session:
    id: str
    dir: Path
    spec: conmon.ExecSpec

    @property
    def exit_file(self) -> Path:
        return self.spec.exit_dir / self.spec.cid  # conmon names it after the container

    def exit_code(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            text = self.exit_file.read_text().strip()
            if text:
                return int(text)
        return None

    def conmon_alive(self) -> bool:
        return exit_codes.alive(self.spec.conmon_pidfile)


def start(
    rt: Runtime, layout: Layout, paths: ContainerLayout, cid: str, name: str, req: ExecRequest, spec: dict[str, Any]
) -> Session:
    """Start the session under conmon. Raises ConmonError when the runtime could not."""
    sid = secrets.token_hex(6)
    sdir = paths.exec_session(sid)
    sdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sdir / "process.json", process_spec(spec, req))
    espec = conmon.ExecSpec(
        cid=cid,
        session=sid,
        name=name,
        bundle=paths.bundle,
        process_spec=sdir / "process.json",
        log_path=sdir / "exec.log",
        exit_dir=sdir,
        pidfile=sdir / "exec.pid",
        conmon_pidfile=sdir / "conmon.pid",
        socket_dir=layout.sockets,
        stdin=req.options.interactive,
    )
    try:
        conmon.start_exec(rt, espec)
    except AmberError:
        shutil.rmtree(sdir, ignore_errors=True)
        raise
    return Session(sid, sdir, espec)


def attach(session: Session, *, stdin: BinaryIO | None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Feed `stdin` to the session (then close it), print its output until it exits; its exit
    code (-1 when conmon recorded none). The session's files are removed after."""
    out = out or sys.stdout
    err = err or sys.stderr
    if stdin is not None:
        threading.Thread(target=_feed, args=(session, stdin), daemon=True).start()

    def running() -> bool:
        return session.exit_code() is None and session.conmon_alive()

    try:
        for stream, text in follow_records(session.spec.log_path, running):
            target = out if stream == "stdout" else err
            target.write(text)
            target.flush()
        code = session.exit_code()
        return code if code is not None else -1
    finally:
        shutil.rmtree(session.dir, ignore_errors=True)
        shutil.rmtree(session.spec.socket_dir / session.id, ignore_errors=True)


def follow_records(path: Path, running: Callable[[], bool], poll: float = 0.05) -> Iterator[tuple[str, str]]:
    """(stream, text) of each k8s-file record as it is written, exactly as the process wrote it:
    a full record (F) ends with a newline, a partial one (P) does not. Until `running()` is false
    and the log is drained."""
    while not path.exists():
        if not running():
            return
        time.sleep(poll)
    with path.open(errors="replace", newline="\n") as f:
        buf = ""
        while True:
            chunk = f.readline()
            if chunk:
                buf += chunk
                if buf.endswith("\n"):
                    yield from _records(buf)
                    buf = ""
                continue
            if not running():  # the process is gone: what conmon wrote last, then stop
                yield from _records(buf + f.read())
                return
            time.sleep(poll)


def _records(text: str) -> Iterator[tuple[str, str]]:
    for record in text.split("\n"):  # only newlines end records (never \x0b, \x1c...)
        parts = record.split(" ", 3)
        if len(parts) >= 3:
            body = parts[3] if len(parts) > 3 else ""
            yield parts[1], body + ("\n" if parts[2] == "F" else "")


def _feed(session: Session, stdin: BinaryIO) -> None:
    """Copy `stdin` into conmon's attach socket, then close it: conmon closes the process's
    stdin when the attached client goes (it is started without --leave-stdin-open)."""
    path = conmon.attach_socket(session.spec.socket_dir, session.id)
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        dirfd = os.open(path.parent, os.O_PATH)
    except OSError:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.connect(f"/proc/self/fd/{dirfd}/attach")  # short whatever the socket dir's length
            while chunk := stdin.read1(8192) if hasattr(stdin, "read1") else stdin.read(8192):
                sock.sendall(chunk)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            # conmon closes the process's stdin once we are gone
    except OSError:
        return
    finally:
        os.close(dirfd)
