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
    "config.dump createNetNS = true and networkMode = 'bridge'",
    "container root dir mode 0555 when dumping for podman (CRIU files.img '/' mode 040555)",
)


def podman_fix(image_id: str, *, skip: int | None = None, compression: str = "none") -> Fix:
    """Every change podman needs (PODMAN_NEEDS), but the one numbered `skip`."""
    config: list[Callable[[Json], None]] = []
    if skip != 0:
        config.append(lambda c: c.update(rootfsImageID=image_id))
    if skip != 1:
        config.append(lambda c: c.update(createNetNS=True, networkMode="bridge"))
    config.append(lambda c: c.update(stopSignal=15, stopTimeout=10))
    return Fix(config=config, root_mode=None if skip == 2 else 0o555, compression=compression)
