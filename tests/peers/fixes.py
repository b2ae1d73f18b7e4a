"""The amber-side changes each peer needs, as hand-applied `Fix`es (tests/peers/archive_fix.py).

Each constant's docstring-like comment says the exact change amber must make when it writes an
archive; the interop tests apply them to copies of amber's archives and show the peer then restores.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.peers.archive_fix import Fix, Json

# podman 5.4.2 (libpod/container_internal_common.go restore, pkg/checkpoint/crutils):
#   1. config.dump rootfsImageID: the image's ID in podman's store, which for OCI/docker images is
#      the config digest (hex, no "sha256:"); amber writes its own hash of layers + config.
#   2. config.dump createNetNS: true (+ networkMode "bridge"): without it podman passes spec.dump's
#      netns path (the source host's) to the runtime ("Requested network namespace ... does not exist").
#   3. the container root's mode in CRIU's files.img ("/" entries): podman's overlay root is 0555,
#      CRIU refuses 0755 ("File . has bad mode 040555 (expect 040755)").
#   4. stopSignal 15 / stopTimeout 10 (podman stops a 0 timeout with SIGKILL at once).
PODMAN_NEEDS = (
    "config.dump rootfsImageID = the OCI config digest of the image (hex, podman's image ID)",
    "config.dump createNetNS = true (networkMode 'bridge' for podman's default network, 'none' here)",
    "container root dir mode 0555 when dumping for podman (CRIU files.img '/' mode 040555)",
)


PODMAN_STOP = "config.dump stopSignal = 15 and stopTimeout = 10 (podman reads 0 and 0: SIGKILL at once on stop)"


def podman_fix(image_id: str, *, skip: int | None = None, compression: str = "none", stop: bool = True) -> Fix:
    """Every change podman needs (PODMAN_NEEDS, and PODMAN_STOP if `stop`), but the one numbered `skip`."""
    config: list[Callable[[Json], None]] = []
    if skip != 0:
        config.append(lambda c: c.update(rootfsImageID=image_id))
    if skip != 1:
        config.append(lambda c: c.update(createNetNS=True, networkMode="none"))
    if stop:
        config.append(lambda c: c.update(stopSignal=15, stopTimeout=10))
    return Fix(config=config, root_mode=None if skip == 2 else 0o555, compression=compression)


# containerd 2.1 (internal/cri/server/container_checkpoint_linux.go, CRImportCheckpoint):
#   1. the outer tar uncompressed: containerd unpacks the archive with Go's archive/tar as it is
#      ("archive/tar: invalid tar header" on amber's zstd or gzip archives).
#   2. a status.dump member: containerd reads it for the container's CRI status (`{}` is enough).
#   3. config.dump rootfsImageRef: the base image as NAME@DIGEST that containerd can pull (its
#      registry's manifest digest), with rootfsImageName the pullable NAME:TAG.
CONTAINERD_NEEDS = (
    "an uncompressed outer tar when exporting for containerd",
    "a status.dump member ('{}' is enough)",
    "config.dump rootfsImageRef = NAME@sha256:<manifest digest> pullable by containerd (rootfsImageName = NAME:TAG)",
)
# amber restoring containerd's CRI checkpoint:
AMBER_READS_CONTAINERD = "read a gzip-compressed rootfs-diff.tar (containerd writes one) on restore"


def containerd_fix(name: str, ref: str, *, skip: int | None = None, compression: str = "none") -> Fix:
    """Every change containerd needs (CONTAINERD_NEEDS) but the one numbered `skip`."""
    fix = Fix(compression="zstd" if skip == 0 else compression)
    if skip != 1:
        fix.add["status.dump"] = b"{}"
    if skip != 2:
        fix.config.append(lambda c: c.update(rootfsImageRef=ref, rootfsImageName=name))
    return fix
