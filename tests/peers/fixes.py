"""The amber-side changes each peer needs (amber makes them all now), and `Fix`es that take one back out.

Each constant's comment says the exact change amber makes when it writes an archive; the interop
tests take each one back out of a copy of amber's archive (tests/peers/archive_fix.py) and show the
peer then refuses it: that proves each change is needed.
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


def podman_unfix(undo: int) -> Fix:
    """amber's archive with change number `undo` of PODMAN_NEEDS taken back out (as amber wrote before)."""
    config: list[Callable[[Json], None]] = []

    def no_netns(c: Json) -> None:
        c.pop("createNetNS", None)
        c.pop("networkMode", None)

    if undo == 0:
        config.append(lambda c: c.update(rootfsImageID=c["amber"]["imageID"]))
    if undo == 1:
        config.append(no_netns)
    return Fix(config=config, root_mode=0o755 if undo == 2 else None)


# containerd 2.1 (internal/cri/server/container_checkpoint_linux.go, CRImportCheckpoint):
#   1. the outer tar uncompressed: containerd unpacks the archive with Go's archive/tar as it is
#      ("archive/tar: invalid tar header" on amber's zstd or gzip archives).
#   2. a status.dump member: containerd reads it for the container's CRI status (`{}` is enough).
#   3. config.dump rootfsImageRef: the base image as NAME@DIGEST that containerd can pull (its
#      registry's manifest digest), with rootfsImageName the pullable NAME:TAG.
#   4. the container root's mode 0755 in CRIU's files.img (containerd's snapshot root): amber's
#      `checkpoint --target containerd`.
CONTAINERD_NEEDS = (
    "an uncompressed outer tar when exporting for containerd",
    "a status.dump member ('{}' is enough)",
    "config.dump rootfsImageRef = NAME@sha256:<manifest digest> pullable by containerd (rootfsImageName = NAME:TAG)",
    "container root dir mode 0755 when dumping for containerd (--target containerd; podman's 0555 is refused)",
)
# amber restoring containerd's CRI checkpoint:
AMBER_READS_CONTAINERD = "read a gzip-compressed rootfs-diff.tar (containerd writes one) on restore"


def containerd_unfix(undo: int, *, compression: str = "none") -> Fix:
    """amber's containerd archive with change number `undo` of CONTAINERD_NEEDS taken back out."""
    fix = Fix(compression="zstd" if undo == 0 else compression)
    if undo == 1:
        fix.drop.add("status.dump")
    if undo == 2:
        fix.config.append(lambda c: c.update(rootfsImageRef=None))
    if undo == 3:
        fix.root_mode = 0o555
    return fix
