"""amber migrate's channels: the SSH control channel (line-delimited JSON with the destination's
`amber migrate-receive`) and the direct TCP stream the archive goes over.

SSH carries only small JSON messages; the archive goes over a TCP connection between the two
hosts, never through a file on either disk. Every wait here has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from amber.adapters import run as runners
from amber.errors import AmberError, ExitCode, UsageError

CONNECT_TIMEOUT = 30.0  # ssh's own ConnectTimeout, and the TCP stream's connect
REPLY_TIMEOUT = 120.0  # the destination's answer to a preflight
MAX_LINE = 1 << 20  # a control message is small: a longer line is a broken peer


class ChannelError(AmberError):
    """The control channel broke, or the peer said something amber cannot read."""


@dataclass(frozen=True)
class SshDest:
    """Where `amber migrate` goes: ssh://[user@]host[:port]."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SshDest:
        """Raises UsageError for anything but ssh://[user@]host[:port]."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "ssh" or not parts.hostname or port == -1 or parts.path not in ("", "/"):
            raise UsageError(
                f"destination {url!r} is not ssh://[user@]host[:port]",
                hint="give the destination as ssh://HOST, ssh://USER@HOST or ssh://USER@HOST:PORT",
            )
        return cls(parts.hostname, parts.username, port)

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return f"ssh://{self.target}" + (f":{self.port}" if self.port else "")


def ssh_argv(
    dest: SshDest, remote: Sequence[str], *, identity: str | None = None, options: Sequence[str] = ()
) -> list[str]:
    """The ssh command line that runs `remote` (argv) on `dest`, batch mode (never a prompt)."""
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(CONNECT_TIMEOUT)}"]
    if dest.port:
        argv += ["-p", str(dest.port)]
    if identity:
        argv += ["-i", identity]
    for opt in options:
        argv += ["-o", opt]
    return [*argv, dest.target, "--", shlex.join(remote)]


class Control:
    """The ssh process running the destination's `amber migrate-receive`: JSON lines both ways."""

    def __init__(self, argv: Sequence[str], dest: SshDest) -> None:
        self.dest = dest
        self._proc = runners.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""
        self._err = b""

    def send(self, message: dict[str, Any]) -> None:
        """Raises ChannelError when the destination has gone."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message).encode() + b"\n")
            self._proc.stdin.flush()
        except OSError as exc:
            raise self._broken(f"could not write to it: {exc.strerror}") from exc

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next message. Raises ChannelError when none comes within `timeout` seconds, the
        channel closes, or the line is not a JSON object."""
        assert self._proc.stdout is not None and self._proc.stderr is not None
        out, err = self._proc.stdout.fileno(), self._proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._broken(f"no answer in {timeout:g} s")
            ready, _, _ = select.select([out, err], [], [], left)
            if err in ready:
                self._err = (self._err + os.read(err, 65536))[-8192:]
            if out in ready:
                data = os.read(out, 65536)
                if not data:
                    raise self._broken("the connection closed")
                self._buf += data
                if len(self._buf) > MAX_LINE:
                    raise self._broken("it sent an over-long line")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise self._broken(f"it sent something that is not JSON: {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise self._broken("it sent a JSON value that is not an object")
        return message

    def _broken(self, why: str) -> ChannelError:
        self._drain_stderr()
        said = self._err.decode(errors="replace").strip().splitlines()[-6:]
        return ChannelError(
            f"the control channel to {self.dest} broke: {why}",
            hint="check that `ssh` reaches the destination and that --remote-amber runs amber there",
            details=said,
        )

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        err = self._proc.stderr.fileno()
        while select.select([err], [], [], 0)[0]:
            data = os.read(err, 65536)
            if not data:
                return
            self._err = (self._err + data)[-8192:]

    def close(self, timeout: float = 10.0) -> None:
        """End the channel: stdin closed, the ssh process waited for, killed after `timeout`."""
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=timeout)
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


def peer_error(message: dict[str, Any], dest: SshDest) -> AmberError:
    """The destination's failure report as the error it names (its exit code kept)."""
    from amber import errors

    code = int(message.get("exit", ExitCode.ERROR))
    kinds = {
        int(kind.exit_code): kind
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, AmberError) and kind.__module__ == errors.__name__
    }
    cls = kinds.get(code, AmberError)
    return cls(f"on {dest}: {message.get('error') or 'the destination failed'}", hint=message.get("hint") or None)
