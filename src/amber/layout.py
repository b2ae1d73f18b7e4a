"""Every path amber writes, derived from its two roots (`--root`, `--runroot`). Nothing else
builds a path from a string: the engine asks the Layout.

    ROOT/images/ID.json               image records          RUNROOT/locks/KEY.lock     flocks
    ROOT/layers/DIGEST/               extracted layers       RUNROOT/exits/CID          exit codes
    ROOT/tmp/                         scratch on disk        RUNROOT/netns/CID          netns files
    ROOT/containers/CID/              one container          RUNROOT/runtime/KIND/      runtime state
        container.json                its record             RUNROOT/socket/            conmon sockets
        diff/ work/ merged/           the overlay            /dev/shm/amber-HASH/       scratch in memory
        exec/SESSION/                 an exec session (process.json, exec.log, exit file)
        dump.log                      CRIU's log of a failed checkpoint, kept
        checkpoint.pending            a checkpoint under way (PendingCheckpoint)
        restore.pending               a restore from an archive under way (PendingRestore)
        userdata/                     the OCI bundle (podman's name)
            config.json ctr.log pidfile conmon.pid restore.log stats-restore
            checkpoint/               CRIU's images kept in place
            restore-mounts/           fresh sources for a restored container's bind mounts
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from amber.adapters.podman_names import (
    CHECKPOINT_DIR,
    CTR_LOG,
    DUMP_LOG,
    NETWORK_STATUS,
    PRE_CHECKPOINT_DIR,
    RESTORE_LOG,
    STATS_RESTORE,
)

SHM = Path("/dev/shm")
RESTORE_MOUNTS = "restore-mounts"  # in a bundle: see ContainerLayout.restore_mounts
NAMES_LOCK = "names"  # the lock held while a container name is checked and taken


def criu_transfer_config(work: Path, *, lazy: bool = False) -> Path:
    """The CRIU configuration file (CRIU_CONFIG_FILE) of a dump that sends its pages away (crun)."""
    return work / ("criu-lazy.conf" if lazy else "criu-page-server.conf")


def received_pages(work: Path) -> Path:
    """Where a migration's page server writes the pages it receives, inside a scratch directory."""
    return work / "pages"


def page_server_log(work: Path) -> Path:
    """The log of a migration's page server, beside its pages (not among them)."""
    return work / "page-server.log"


def images_dir(work: Path, *, pre: bool = False) -> Path:
    """Where CRIU's images go inside a work directory (a bundle or a scratch directory)."""
    return work / (PRE_CHECKPOINT_DIR if pre else CHECKPOINT_DIR)


@dataclass(frozen=True)
class ContainerLayout:
    """Where one container's pieces live."""

    dir: Path
    netns: Path  # the bind-mounted network namespace
    exit_file: Path  # conmon writes the exit code here

    @property
    def record(self) -> Path:
        return self.dir / "container.json"

    @property
    def bundle(self) -> Path:
        """The OCI bundle: config.json, ctr.log, checkpoint/ (podman calls it userdata)."""
        return self.dir / "userdata"

    @property
    def config_json(self) -> Path:
        return self.bundle / "config.json"

    @property
    def upper(self) -> Path:
        return self.dir / "diff"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    @property
    def pidfile(self) -> Path:
        return self.bundle / "pidfile"

    @property
    def conmon_pidfile(self) -> Path:
        return self.bundle / "conmon.pid"

    @property
    def log(self) -> Path:
        return self.bundle / CTR_LOG

    @property
    def checkpoint(self) -> Path:
        """CRIU's images kept in the bundle (checkpoint without --export, or --keep)."""
        return images_dir(self.bundle)

    @property
    def dump_log(self) -> Path:
        """CRIU's log of a checkpoint that failed, kept where the user can read it."""
        return self.dir / DUMP_LOG

    @property
    def restore_log(self) -> Path:
        return self.bundle / RESTORE_LOG

    @property
    def stats_restore(self) -> Path:
        return self.bundle / STATS_RESTORE

    @property
    def criu_restore_config(self) -> Path:
        """CRIU options the runtime cannot pass on (restore --tcp-close), via CRIU_CONFIG_FILE."""
        return self.bundle / "criu-restore.conf"

    @property
    def restore_mounts(self) -> Path:
        return self.bundle / RESTORE_MOUNTS

    def exec_session(self, sid: str) -> Path:
        """One exec session: its process spec, log, pid files and exit file."""
        return self.dir / "exec" / sid

    @property
    def attachments(self) -> Path:
        """The container's networks, ports and mounts as asked (engine.attachments)."""
        return self.dir / "attachments.json"

    @property
    def network_status(self) -> Path:
        """netavark's status of the container's networks (podman's network.status)."""
        return self.bundle / NETWORK_STATUS

    @property
    def resolv_conf(self) -> Path:
        """The /etc/resolv.conf of a container on a network with DNS: its gateway (aardvark-dns)."""
        return self.bundle / "resolv.conf"

    @property
    def conntrack(self) -> Path:
        """The host's conntrack entries of the container's connections (checkpoint --tcp-established)."""
        return self.bundle / "conntrack.json"

    @property
    def pending_checkpoint(self) -> Path:
        return self.dir / "checkpoint.pending"

    @property
    def pending_restore(self) -> Path:
        return self.dir / "restore.pending"

    @property
    def pending_markers(self) -> tuple[Path, Path]:
        return self.pending_checkpoint, self.pending_restore


@dataclass(frozen=True)
class Layout:
    """Every path amber uses, derived from the two roots."""

    root: Path
    runroot: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.runroot / "locks"

    @property
    def exits(self) -> Path:
        return self.runroot / "exits"

    @property
    def netns(self) -> Path:
        return self.runroot / "netns"

    @property
    def probes(self) -> Path:
        """What the runtimes and CRIU said about themselves (adapters/probe_cache.py)."""
        return self.runroot / "probes"

    @property
    def sockets(self) -> Path:
        """conmon's attach sockets."""
        return self.runroot / "socket"

    @property
    def shm(self) -> Path:
        """This amber root's own directory on the tmpfs (scratch work areas that fit in memory)."""
        return SHM / f"amber-{hashlib.sha256(str(self.root).encode()).hexdigest()[:12]}"

    def runtime_state(self, kind: str) -> Path:
        """The `--root` given to an OCI runtime (runc, crun)."""
        return self.runroot / "runtime" / kind

    def container(self, cid: str) -> ContainerLayout:
        return ContainerLayout(dir=self.containers / cid, netns=self.netns / cid, exit_file=self.exits / cid)

    def container_dir(self, cid: str) -> Path:
        return self.container(cid).dir

    def bundle(self, cid: str) -> Path:
        """The OCI bundle: config.json, ctr.log, checkpoint/ (podman calls it userdata)."""
        return self.container(cid).bundle

    @property
    def checkpoint_image_markers(self) -> Path:
        """One `<image id>.json` per checkpoint image in the store (its annotations)."""
        return self.images / "checkpoints"

    def checkpoint_image_marker(self, image_id: str) -> Path:
        return self.checkpoint_image_markers / f"{image_id}.json"

    def is_checkpoint_image(self, image_id: str) -> bool:
        """Is the stored image a checkpoint image (its marker is there)? Read from the layout, so
        that an ordinary image costs no import of the checkpoint image code."""
        return self.checkpoint_image_marker(image_id).is_file()

    # networks and volumes: definitions and volumes are lasting state (under root); leases and
    # netavark's firewall state die with the network namespaces on a reboot (under runroot)
    @property
    def networks_dir(self) -> Path:
        """One `<name>.json` per network."""
        return self.root / "networks"

    @property
    def leases_dir(self) -> Path:
        """One `<name>.leases.json` per network: the addresses given to containers."""
        return self.runroot / "networks"

    @property
    def netavark_config(self) -> Path:
        """netavark's --config directory: its firewall state for this amber root."""
        return self.runroot / "netavark"

    @property
    def volumes_dir(self) -> Path:
        """One directory per named volume: `volume.json` and the content in `_data/`."""
        return self.root / "volumes"

    def volume_dir(self, name: str) -> Path:
        return self.volumes_dir / name

    def volume_data(self, name: str) -> Path:
        """What a container sees at the volume's mount point (podman's `_data`)."""
        return self.volumes_dir / name / "_data"

    def ensure(self) -> None:
        """Make amber's directories, each 0700 whatever the umask (the roots too when this makes
        them). Raises PreconditionError when a root is read-only, a file, or not amber's to use."""
        from amber.adapters.state import make_private_dir

        for d in (self.images, self.layers, self.containers, self.tmp, self.locks, self.exits, self.netns):
            make_private_dir(d)


__all__ = ["ContainerLayout", "Layout", "images_dir"]

# Where the kubelet keeps container checkpoints: `amber archive list` looks there by default,
# as checkpointctl list does. amber only reads it.
KUBELET_CHECKPOINTS = Path("/var/lib/kubelet/checkpoints")
