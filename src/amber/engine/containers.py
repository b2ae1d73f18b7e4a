"""Container operations: create, start, stop, kill, rm, wait, logs, exec, diff.

A running container is: an overlay mount over its image's layers, a network namespace of its own,
an OCI bundle written by amber, and a conmon process supervising the runtime's container. What the
operations share (its paths, runtime and lock; its record brought up to date, listed, inspected;
its pieces on the host made and released) is ContainerRecords, engine/container_records.py.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import signal as signals
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from amber.adapters.state import atomic_write_json, locked
from amber.engine.container_records import ContainerRecords
from amber.engine.store import now, validate_name
from amber.errors import AmberError, CommandError, ConflictError, NotFoundError, UsageError, amended, require_root
from amber.models import Container, Status

if TYPE_CHECKING:  # imported by the calls that use them: `ps`, `stop`, `rm` need none of them
    from amber.engine import diff as diff_changes
    from amber.engine import exec_session
    from amber.engine.attachments import Attachments
    from amber.engine.logs import LogLine
    from amber.engine.run_options import RunOptions


class ContainerService(ContainerRecords):
    """The containers' lifecycle. Any command that finds a checkpoint or a restore that a killed
    amber left half done finishes it first (engine.recovery), under the container's lock."""

    # -- create / start ------------------------------------------------------------------------
    def create(
        self,
        image_ref: str,
        command: Sequence[str] = (),
        *,
        name: str | None = None,
        runtime_name: str | None = None,
        env: Sequence[str] = (),
        workdir: str | None = None,
        attachments: Attachments | None = None,
        options: RunOptions | None = None,
    ) -> Container:
        """A new container (not started). `attachments`: its network, ports and mounts (none:
        loopback only); `options`: podman's run options (user, hostname, limits...). Raises
        UsageError, NotFoundError (image, bind source, env file), ConflictError."""
        from amber.engine import attachments as attach
        from amber.engine import ipc_share, mount_specs, users
        from amber.engine import spec as specs
        from amber.engine.attachments import Attachments
        from amber.engine.run_options import RunOptions

        require_root("creating a container")
        att = attachments or Attachments()
        mount_list = att.mount_specs()
        opts = options or RunOptions()
        self.layout.ensure()
        info = self.choose_runtime(runtime_name)
        image = self.images.get(image_ref)
        args = list(command) or [*image.config.entrypoint, *image.config.cmd]
        if not args:
            raise UsageError(
                f"no command given, and image {image.name} has none", hint=f"give one: amber run {image.name} sh"
            )
        env = [*opts.file_env(), *env]
        for item in env:
            if "=" not in item:
                raise UsageError(f"environment entry '{item}' is not KEY=VALUE")
        layers = list(reversed(self.images.layer_dirs(image)))
        user = users.resolve(opts.user, layers) if opts.user else None
        with self.lock_names():
            cname = validate_name(name) if name else self.store.new_name()
            self.store.check_name_free(cname)
            cid = self.store.new_id()
            c = Container(
                id=cid,
                name=cname,
                image_id=image.id,
                image_name=image.name,
                runtime=info.kind,
                runtime_path=info.path,
                command=args,
                created=now(),
                status=Status.CREATED,
                labels=dict(opts.labels),
                stop_signal=opts.stop_signal_name(),
                stop_timeout=opts.stop_timeout,
                auto_remove=opts.auto_remove,
            )
            p = self.paths(cid)
            p.bundle.mkdir(parents=True, exist_ok=True)
            extra_mounts = mount_specs.oci_mounts(mount_list, self.volumes, container_id=cid)
            attach.save(p.attachments, att)
            spec = specs.generate(
                cid=cid,
                hostname=opts.hostname or cid[:12],
                rootfs=p.merged,
                args=args,
                env=specs.merge_env(image.config.env, env),
                cwd=workdir or image.config.workdir or "/",
                netns=p.netns,
                cgroups_path=specs.cgroups_path(cid, self.layout.root),
                user=user.to_spec() if user else None,
                resources=opts.resources(),
                ipc_shareable=opts.ipc == "shareable",
                auto_remove=opts.auto_remove,
            )
            resolv = attach.resolv_conf(self.networks, att, p.resolv_conf)
            spec["mounts"] = [*spec["mounts"], *extra_mounts, *([attach.resolv_mount(resolv)] if resolv else [])]
            ipc_share.join(spec, opts.ipc, self._current, self.config_of, joiner=cname)  # --ipc container:NAME
            atomic_write_json(p.config_json, spec)
            self.store.save(c)
        return c

    def start(self, ref: str) -> Container:
        require_root("starting a container")
        c = self.store.get(ref)
        with self.lock(c):
            c = self.refresh(self.store.get(c.id))
            if c.status == Status.RUNNING:
                raise ConflictError(f"container {c.name} is already running")
            if c.status == Status.CHECKPOINTED:
                raise ConflictError(
                    f"container {c.name} is checkpointed", hint=f"bring it back with: amber restore {c.name}"
                )
            return self._start_locked(c)

    def _start_locked(self, c: Container) -> Container:
        from amber.adapters import conmon
        from amber.engine import ipc_share

        rt = self.runtime_for(c)
        self.cleanup(c)  # a previous run's leftovers (exited container restarted)
        image = self.images.get(c.image_id)
        try:
            self.prepare_root(c, image_layers=self.images.layer_dirs(image))
            ipc_share.refresh_join(self.paths(c.id).config_json, c.name, self._current, self.config_of)
            pid = conmon.start_monitor(rt, self.monitor_spec(c))
            rt.start(c.id, c.name)
        except AmberError as exc:
            conmon.stop_monitor(self.monitor_spec(c))
            self.cleanup(c)
            if exc.hint is None and any("executable file not found" in d or "No such file" in d for d in exc.details):
                raise amended(exc, hint=f"image {c.image_name} has no command '{c.command[0]}'") from exc
            raise
        c = dataclasses.replace(
            c, status=Status.RUNNING, pid=pid, started=now(), exit_code=None, finished="", restored=False
        )  # a fresh start: no longer the restored one (podman clears .State.Restored)
        self.store.save(c)
        return c

    def cleanup_exited(self, ref: str, *, rm: bool) -> None:
        """conmon's exit command: record the exit; with `rm`, remove the container if it has
        exited (not when a checkpoint stopped it). Raises nothing for a container gone already."""
        c = self.store.find(ref)
        if c is None:
            return
        with locked(self.layout.locks, c.id, f"container {c.name}", wait=True):
            c = self.store.find(c.id)
            if c is None:
                return
            c = self.refresh(c)
            if rm and c.auto_remove and c.status == Status.EXITED:
                self.remove_locked(c, force=False, volumes=True)  # --rm: podman removes anonymous volumes

    def run(self, image_ref: str, command: Sequence[str] = (), **kwargs: Any) -> Container:
        c = self.create(image_ref, command, **kwargs)
        try:
            return self.start(c.id)
        except AmberError:
            self.remove(c.id, force=True, volumes=True)
            raise

    def wait(self, ref: str, timeout: float | None = None) -> Container:
        c = self.store.get(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            c = self.inspect_record(c.id)
            if c.status != Status.RUNNING:
                return c
            if deadline is not None and time.monotonic() > deadline:
                return c
            time.sleep(0.05)

    # -- stop / kill / rm ----------------------------------------------------------------------
    def kill(self, ref: str, sig: str = "KILL") -> Container:
        """Send `sig` to the container's init, under its lock. Raises UsageError (unknown signal),
        ConflictError (not running, or busy past the lock wait), AmberError (the runtime failed)."""
        name = sig.upper().removeprefix("SIG")
        if not name.isdigit() and not hasattr(signals, f"SIG{name}"):
            raise UsageError(f"unknown signal '{sig}'", hint="use a name like TERM, KILL, HUP or a number")
        c = self.store.get(ref)
        with self.lock(c):
            c = self.refresh(self.store.get(c.id))
            if c.status != Status.RUNNING:
                raise ConflictError(f"container {c.name} is not running", hint="amber ps -a shows its state")
            res = self.runtime_for(c).kill(c.id, name)
            if res.returncode != 0:
                raise AmberError(f"could not signal container {c.name}: {res.stderr.strip()}")
            return c

    def stop(self, ref: str, timeout: float | None = None) -> Container:
        """Send the container's stop signal (--stop-signal, TERM), then KILL after `timeout`
        seconds (default its --stop-timeout; 0: KILL at once), under the container's lock; the container as it
        exited, its exit code recorded (the program's own, or 137 for KILL, as podman's). A
        paused container is thawed first so it can see the signal. Raises NotFoundError,
        ConflictError when another command is busy with it past the lock wait."""
        c = self.store.get(ref)
        with self.lock(c):
            c = self.refresh(self.store.get(c.id))
            if c.status not in (Status.RUNNING, Status.PAUSED):
                return c
            rt = self.runtime_for(c)
            if c.status == Status.PAUSED:
                rt.resume(c.id)
                c = dataclasses.replace(c, status=Status.RUNNING)
                self.store.save(c)
            wait = c.stop_timeout if timeout is None else timeout
            if wait > 0:  # -t 0: KILL at once, as podman (exit code 137)
                rt.kill(c.id, c.stop_signal, all_processes=True)
                c = self._wait_locked(c, wait)
            if c.status == Status.RUNNING:
                rt.kill(c.id, "KILL", all_processes=True)
                c = self._wait_locked(c, 30)
            return c

    def _wait_locked(self, c: Container, timeout: float) -> Container:
        """Poll (holding the lock) until `c` no longer runs or `timeout` seconds pass: conmon's
        exit file every 10 ms (a stat), the runtime's state when it appears or every 0.25 s."""
        deadline = time.monotonic() + timeout
        exit_file = self.paths(c.id).exit_file
        stale = exit_file.exists()  # (a start removes the last one: this is only a guard)
        asked = 0.0
        while True:
            now = time.monotonic()
            if (not stale and exit_file.exists()) or now - asked >= 0.25 or now > deadline:
                asked = now
                c = self.refresh(self.store.get(c.id))
                if c.status != Status.RUNNING or now > deadline:
                    return c
            time.sleep(0.01)

    def pause(self, ref: str) -> Container:
        """Freeze every process of the container (the runtime's pause: the cgroup freezer).
        Raises NotFoundError, ConflictError (not running), CommandError."""
        return self._freeze(ref, pause=True)

    def unpause(self, ref: str) -> Container:
        """Thaw a paused container. Raises NotFoundError, ConflictError (not paused), CommandError."""
        return self._freeze(ref, pause=False)

    def _freeze(self, ref: str, *, pause: bool) -> Container:
        c = self.store.get(ref)
        with self.lock(c):
            c = self.refresh(self.store.get(c.id))
            want, verb = (Status.RUNNING, "pause") if pause else (Status.PAUSED, "unpause")
            if c.status != want:
                raise ConflictError(  # podman: '"exited" is not running, can't pause'
                    f"container {c.name} is {c.status}, not {want}: cannot {verb} it",
                    hint="amber pause works on running containers, amber unpause on paused ones",
                )
            rt = self.runtime_for(c)
            if pause:
                rt.pause(c.id, c.name)
            elif (res := rt.resume(c.id)).returncode != 0:
                raise CommandError(
                    res.argv, res.returncode, res.stdout, res.stderr, what=f"could not unpause container {c.name}"
                )
            c = dataclasses.replace(c, status=Status.PAUSED if pause else Status.RUNNING)
            self.store.save(c)
            return c

    def remove(
        self, ref: str, *, force: bool = False, timeout: float | None = None, volumes: bool = False
    ) -> Container:
        """Remove a container; with `force`, stop it first (`timeout` seconds before KILL: rm -t;
        none: KILL at once); with `volumes` (rm -v), its anonymous volumes too. Raises
        NotFoundError, ConflictError (running without `force`)."""
        c = self.store.get(ref)
        if force and timeout is not None and timeout > 0:
            c = self.stop(c.id, timeout)
        with self.lock(c):
            c = self.refresh(self.store.get(c.id))
            return self.remove_locked(c, force=force, volumes=volumes)

    def remove_locked(self, c: Container, *, force: bool, volumes: bool = False) -> Container:
        """Remove `c`, whose lock the caller holds (`volumes`: and its anonymous volumes no
        other container uses). Raises ConflictError (running, no `force`)."""
        if c.status in (Status.RUNNING, Status.PAUSED):
            if not force:
                raise ConflictError(
                    f"container {c.name} is {c.status}", hint=f"stop it first (amber stop {c.name}) or use rm -f"
                )
            rt = self.runtime_for(c)
            rt.kill(c.id, "KILL", all_processes=True)
            if c.status == Status.PAUSED:
                rt.resume(c.id)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                st = self.runtime_state(c)
                if st is None or st.status == "stopped":
                    break
                time.sleep(0.05)
        self.cleanup(c)
        for volume in self.attachments(c).named_volumes():
            self.volumes.release(volume.name, c.id)
            if volumes and volume.anonymous:
                with contextlib.suppress(ConflictError, NotFoundError):  # another container uses it
                    self.volumes.remove(volume.name)
        self.store.delete(c.id)
        with contextlib.suppress(FileNotFoundError):
            self.paths(c.id).exit_file.unlink()
        return c

    def diff(self, ref: str) -> builtins.list[diff_changes.Change]:
        """What the container changed in its root file system (podman's `container diff`).
        Raises NotFoundError (container, its image)."""
        from amber.engine import diff as diff_changes

        c = self.store.get(ref)
        layers = list(reversed(self.images.layer_dirs(self.images.get(c.image_id))))
        return diff_changes.changes(self.paths(c.id).upper, layers)

    # -- logs / exec ---------------------------------------------------------------------------
    def logs(self, ref: str, *, follow: bool = False) -> Iterator[LogLine]:
        from amber.engine.logs import follow_log, read_log

        c = self.store.get(ref)
        log = self.paths(c.id).log
        if not follow:
            yield from read_log(log)
            return

        def running() -> bool:
            return self.inspect_record(c.id).status == Status.RUNNING

        yield from follow_log(log, running)

    def exec(self, ref: str, argv: Sequence[str], opts: exec_session.ExecOptions) -> int:
        """Run a command in the running container under conmon (its pipes, never ours). Its exit
        code; with `opts.detach`, 0 once it runs. `opts.interactive` feeds our stdin to it. The
        working directory defaults to the container's. Raises NotFoundError, ConflictError (not
        running), UsageError (no command, unknown user), ConmonError (the runtime could not)."""
        from amber.engine import exec_session, users

        c = self.inspect_record(ref)
        if c.status != Status.RUNNING:
            raise ConflictError(
                f"container {c.name} is {c.status}, not running", hint=f"start it first: amber start {c.name}"
            )
        if not argv:
            raise UsageError("exec needs a command", hint=f"amber exec {c.name} sh -c 'echo hi'")
        rt = self.runtime_for(c)
        if opts.tty:  # a terminal is the caller's own: the runtime gives the process our pty
            return rt.exec(c.id, argv, env=opts.env, cwd=opts.workdir, tty=True)
        p = self.paths(c.id)
        spec = json.loads(p.config_json.read_text())
        user = users.resolve(opts.user, [p.merged]) if opts.user else None
        req = exec_session.ExecRequest(argv=list(argv), options=opts, user=user)
        session = exec_session.start(rt, self.layout, p, c.id, c.name, req, spec)
        if opts.detach:
            return 0
        return exec_session.attach(session, stdin=sys.stdin.buffer if opts.interactive else None)
