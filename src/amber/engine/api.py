"""`Engine`: the library's facade over amber's operations. The CLI drives amber through it.

    import amber
    eng = amber.Engine(root=ROOT, runroot=RUNROOT)
    eng.import_image("busybox-rootfs.tar", "localhost/busybox:1")
    eng.run("localhost/busybox:1", ["sh", "-c", "sleep 1000"], name="web", detach=True, runtime="crun")
    eng.checkpoint("web", export="web.tar.zst")
    c = eng.restore_archive("web.tar.zst", name="web2")

The calls are grouped by area: containers and images here, checkpoint and restore in
api_checkpoints.py, checkpoint images in api_images.py, archives in api_archives.py, podman's
views in api_views.py. Keyword options mirror the command line's flags and are checked the same way (UsageError).
Paths may be str or os.PathLike. Every error is an amber.errors exception (docs/api.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Unpack

from amber.adapters import run as runners
from amber.config import Settings
from amber.engine.api_archives import ArchiveCalls
from amber.engine.api_checkpoints import CheckpointCalls
from amber.engine.api_views import PodmanViewCalls
from amber.engine.services import Services, iterate_with, with_runner
from amber.errors import AmberError, UsageError, require_root

if TYPE_CHECKING:
    from amber.engine.demo import DemoEvent
    from amber.engine.diff import Change
    from amber.engine.host_info import HostInfo
    from amber.engine.images import ImageRemoval
    from amber.engine.logs import LogLine
    from amber.engine.run_options import RunKwargs
    from amber.models import Container, Image

PathLike = str | os.PathLike[str]


class Engine(CheckpointCalls, PodmanViewCalls, ArchiveCalls):
    """amber as a library. Construction reads the settings only; nothing runs until a call."""

    def __init__(
        self,
        root: PathLike | None = None,
        runroot: PathLike | None = None,
        *,
        config: PathLike | None = None,
        runtime: str | None = None,
        runner: runners.Runner | None = None,
        settings: Settings | None = None,
    ) -> None:
        """`root`, `runroot`, `config` default as the CLI's (/var/lib/amber, /run/amber,
        /etc/amber/amber.toml, or $AMBER_ROOT, $AMBER_RUNROOT, $AMBER_CONFIG). `runtime` is the
        default OCI runtime (the global --runtime); `runner` replaces the tools (adapters/run.py);
        `settings` gives everything at once, instead of root, runroot and config.

        Raises UsageError for an invalid config file, or for `settings` given with the others.
        """
        if settings is None:
            settings = Settings.load(root=_text(root), runroot=_text(runroot), config_file=_text(config))
        elif root is not None or runroot is not None or config is not None:
            raise UsageError(
                "Engine was given settings and also root, runroot or config",
                hint="give either settings (Engine.from_settings) or root/runroot/config",
            )
        self.settings = settings
        self.runner: runners.Runner = runner or runners.SYSTEM
        self.services = Services(settings, runtime)
        self.layout = self.services.layout

    @classmethod
    def from_settings(
        cls, settings: Settings, runtime: str | None = None, *, runner: runners.Runner | None = None
    ) -> Engine:
        """An engine on explicit settings (tests use it). Raises nothing."""
        return cls(settings=settings, runtime=runtime, runner=runner)

    # ================================ images ==================================================
    @with_runner
    def import_image(self, source: PathLike, name: str) -> Image:
        """Import a rootfs tarball, OCI layout, oci-archive or docker save as `name`.

        An OCI layout or oci-archive that is a checkpoint image is stored as one.
        Raises UsageError (bad name), NotFoundError (no source), ArchiveError (malformed or
        hostile source), PreconditionError (not root).
        """
        from amber.engine.options import as_path

        return self.services.checkpoint_images.import_image(as_path(source), name)

    @with_runner
    def images(self) -> list[Image]:
        """Every image, newest first. Raises nothing."""
        return self.services.images.list()

    @with_runner
    def image(self, ref: str) -> Image:
        """An image by name, id or id prefix. Raises NotFoundError, UsageError (ambiguous prefix)."""
        return self.services.images.get(ref)

    @with_runner
    def remove_image(self, ref: str, *, force: bool = False) -> ImageRemoval:
        """Remove an image, or untag it when `ref` is a name it shares with others (`amber rmi`).

        With `force`, the containers using it are removed too; they are found under the images
        lock. Raises NotFoundError, ConflictError (in use, no `force`), PreconditionError.
        """
        containers = self.services.containers
        removal = self.services.images.remove_image(
            ref,
            users=containers.users_of_image,
            force=force,
            remove_container=lambda name: containers.remove(name, force=True),
        )
        if removal.deleted:
            self.services.checkpoint_images.forget(removal.image.id)
        return removal

    # ================================ containers ==============================================
    @with_runner
    def create(self, image: str, command: Sequence[str] = (), **options: Unpack[RunKwargs]) -> Container:
        """Create a container (not started). `command` defaults to the image's; `options`
        (engine.run_options.RunKwargs) are its `name`, `runtime`, `env` (KEY=VALUE entries),
        `workdir`, its network (default: amber's default one, "none": loopback only), ip,
        mac_address, network_aliases, publish, volumes and tmpfs (AttachOptions), and podman's run
        options: `user` (USER[:GROUP]), `hostname`, `env_files`, `labels`, `memory` ("512m" or
        bytes), `cpus`, `pids_limit`, `stop_signal` and `stop_timeout` (what stop does), `ipc`
        (private, shareable), `auto_remove` (--rm). Raises UsageError (no command, bad env, name
        or option), NotFoundError (image, bind source, env file), ConflictError (name taken),
        PreconditionError (runtime missing, not root)."""
        from amber.engine.attachments import from_options
        from amber.engine.run_options import make_options

        attachments = from_options(options)
        opts = make_options(**options)
        require_root("creating a container")
        # Under the images lock: a forced removal of the image sees this container, or this
        # create sees no image.
        with self.services.images.lock():
            self.require_runnable(image)
            return self.services.containers.create(
                image,
                list(command),
                name=options.get("name"),
                runtime_name=options.get("runtime"),
                env=list(options.get("env", ())),
                workdir=options.get("workdir"),
                attachments=attachments,
                options=opts,
            )

    @with_runner
    def run(
        self,
        image: str,
        command: Sequence[str] = (),
        *,
        detach: bool = False,
        rm: bool = False,
        **options: Unpack[RunKwargs],
    ) -> Container:
        """Create and start a container (options as `create`'s). With `detach`, return it
        running (with `rm`, it is removed when it exits); without, wait until it exits and return
        it exited (removed then with `rm`). Raises what `create` and `start` raise (nothing is
        left behind when the start fails)."""
        options["auto_remove"] = rm and detach  # in the foreground, finish() removes it
        c = self.create(image, command, **options)
        try:
            c = self.services.containers.start(c.id)
        except AmberError:
            self.services.containers.remove(c.id, force=True, volumes=True)
            raise
        if detach:
            return c
        return self.finish(c.id, rm=rm)

    @with_runner
    def finish(self, container: str, *, rm: bool = False) -> Container:
        """Wait until the container exits and return it; with `rm`, remove it then. Raises
        NotFoundError."""
        c = self.services.containers.wait(container)
        if rm:  # podman's --rm takes the anonymous volumes too
            self.services.containers.remove(c.id, force=True, volumes=True)
        return c

    @with_runner
    def start(self, container: str) -> Container:
        """Start a created or exited container. Raises NotFoundError, ConflictError (running,
        checkpointed, busy), CommandError (the runtime failed), PreconditionError."""
        return self.services.containers.start(container)

    @with_runner
    def stop(self, container: str, *, timeout: float | None = None) -> Container:
        """The container's stop signal (TERM unless --stop-signal), then KILL after `timeout`
        seconds (default its --stop-timeout, 10); the exit code is recorded. Raises NotFoundError."""
        return self.services.containers.stop(container, timeout=timeout)

    @with_runner
    def pause(self, container: str) -> Container:
        """Freeze its processes. Raises NotFoundError, ConflictError (not running), CommandError."""
        return self.services.containers.pause(container)

    @with_runner
    def unpause(self, container: str) -> Container:
        """Thaw a paused container. Raises NotFoundError, ConflictError (not paused), CommandError."""
        return self.services.containers.unpause(container)

    @with_runner
    def kill(self, container: str, signal: str = "KILL") -> Container:
        """Send a signal (name or number). Raises NotFoundError, ConflictError (not running),
        UsageError (unknown signal), AmberError (the runtime could not)."""
        return self.services.containers.kill(container, signal)

    @with_runner
    def remove(
        self, container: str, *, force: bool = False, timeout: float | None = None, volumes: bool = False
    ) -> Container:
        """Remove a container; with `force`, kill it first if it runs (with `timeout`: stop it,
        KILL after that many seconds); with `volumes` (rm -v), its anonymous volumes (`-v /path`)
        too. Raises NotFoundError, ConflictError (running without `force`, busy)."""
        return self.services.containers.remove(container, force=force, timeout=timeout, volumes=volumes)

    @with_runner
    def containers(self, *, running_only: bool = False) -> list[Container]:
        """Every container (`amber ps -a`), or only the running ones (`amber ps`). Raises nothing."""
        return self.services.containers.list(all_containers=not running_only)

    @with_runner
    def container(self, container: str) -> Container:
        """One container by name, id or id prefix, its state brought up to date. Raises
        NotFoundError."""
        return self.services.containers.inspect_record(container)

    def logs(self, container: str, *, follow: bool = False) -> Iterator[LogLine]:
        """A container's output lines; with `follow`, until it stops. Raises NotFoundError."""
        return iterate_with(self.runner, self.services.containers.logs(container, follow=follow))

    @with_runner
    def exec(
        self,
        container: str,
        command: Sequence[str],
        *,
        env: Sequence[str] = (),
        workdir: str | None = None,
        tty: bool = False,
        user: str | None = None,
        interactive: bool = False,
        detach: bool = False,
    ) -> int:
        """Run a command in a running container under conmon (its pipes, never ours; output
        printed on our stdout/stderr); its exit code, or 0 once started with `detach`.
        `interactive` feeds our stdin to it, `user` is USER[:GROUP], `workdir` defaults to the
        container's. Raises NotFoundError, ConflictError (not running), UsageError (no command,
        unknown user), AmberError (the runtime could not start it)."""
        from amber.engine.exec_session import ExecOptions

        opts = ExecOptions(env=tuple(env), workdir=workdir, tty=tty, user=user, interactive=interactive, detach=detach)
        return self.services.containers.exec(container, list(command), opts)

    @with_runner
    def diff(self, container: str) -> list[Change]:
        """What the container changed in its root file system, by path: podman's `container
        diff` (A added, C changed, D deleted). Raises NotFoundError."""
        return self.services.containers.diff(container)

    @with_runner
    def cleanup(self, container: str, *, rm: bool = False) -> None:
        """Record an exited container's exit (conmon's exit command); with `rm`, remove a --rm
        container that has exited. Raises nothing for a container gone already."""
        self.services.containers.cleanup_exited(container, rm=rm)

    @with_runner
    def wait(self, container: str, *, timeout: float | None = None) -> Container:
        """Wait until it is no longer running (or `timeout` seconds). Raises NotFoundError."""
        return self.services.containers.wait(container, timeout)

    # ================================ host ====================================================
    @with_runner
    def host_info(self) -> HostInfo:
        """CRIU's version, the runtimes, CRIU's config files (`amber info`). Raises nothing."""
        from amber.engine.host_info import host_info

        return host_info(self.settings)

    def demo(self, *, runtime: str | None = None) -> Iterator[DemoEvent]:
        """Run, checkpoint and restore a counting container, one event per step (`amber demo`).

        Raises PreconditionError (no static busybox, not root), AmberError (the counter did not
        go on), and what the steps raise.
        """
        from amber.engine.demo import run_demo

        chosen = runtime or self.runtime_choice or self.settings.default_runtime
        return iterate_with(self.runner, run_demo(self, chosen))


def _text(value: PathLike | None) -> str | None:
    return os.fspath(value) if value is not None else None
