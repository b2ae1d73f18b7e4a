"""The member names of podman's checkpoint archive (podman_format re-exports them).

Apart from podman_format's records, so that amber.layout, which every command imports, names
its paths without building them."""

from __future__ import annotations

CONFIG_DUMP = "config.dump"
SPEC_DUMP = "spec.dump"
NETWORK_STATUS = "network.status"
STATUS_DUMP = "status.dump"
STATS_DUMP = "stats-dump"
STATS_RESTORE = "stats-restore"
CTR_LOG = "ctr.log"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
CHECKPOINT_DIR = "checkpoint"
PRE_CHECKPOINT_DIR = "pre-checkpoint"
INVENTORY = f"{CHECKPOINT_DIR}/inventory.img"
INVENTORY_IMG = "inventory.img"  # inside an images directory
CPUINFO_IMG = "cpuinfo.img"
ROOTFS_DIFF = "rootfs-diff.tar"
DELETED_FILES = "deleted.files"
DEVSHM = "devshm-checkpoint.tar"
ARTIFACTS_DIR = "artifacts"
VOLUMES_DIR = "volumes"
AMBER_MANIFEST = "amber.manifest"  # amber's own, first in its archives

__all__ = [
    "AMBER_MANIFEST",
    "ARTIFACTS_DIR",
    "CHECKPOINT_DIR",
    "CONFIG_DUMP",
    "CPUINFO_IMG",
    "CTR_LOG",
    "DELETED_FILES",
    "DEVSHM",
    "DUMP_LOG",
    "INVENTORY",
    "INVENTORY_IMG",
    "NETWORK_STATUS",
    "PRE_CHECKPOINT_DIR",
    "RESTORE_LOG",
    "ROOTFS_DIFF",
    "SPEC_DUMP",
    "STATS_DUMP",
    "STATS_RESTORE",
    "STATUS_DUMP",
    "VOLUMES_DIR",
]
