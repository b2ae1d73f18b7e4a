"""Where networks and volumes live under amber's roots (to be folded into config.Layout), and
what their names may be.

Network definitions and volumes are lasting state (under `root`); leases and netavark's firewall
state die with the network namespaces on a reboot, so they live under `runroot`.
"""

from __future__ import annotations

import re
from pathlib import Path

from amber.config import Layout
from amber.errors import UsageError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def check_name(name: str) -> None:
    """Raises UsageError unless `name` is a valid network or volume name (as podman's)."""
    if not NAME_RE.match(name):
        raise UsageError(
            f"invalid name {name!r}", hint="use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )


def networks_dir(layout: Layout) -> Path:
    """One `<name>.json` per network."""
    return layout.root / "networks"


def leases_dir(layout: Layout) -> Path:
    """One `<name>.leases.json` per network: the addresses given to containers."""
    return layout.runroot / "networks"


def netavark_config(layout: Layout) -> Path:
    """netavark's --config directory: its firewall state for this amber root."""
    return layout.runroot / "netavark"


def volumes_dir(layout: Layout) -> Path:
    """One directory per named volume: `volume.json` and the content in `_data/`."""
    return layout.root / "volumes"


def volume_dir(layout: Layout, name: str) -> Path:
    return volumes_dir(layout) / name


def volume_data(layout: Layout, name: str) -> Path:
    """What a container sees at the volume's mount point (podman's `_data`)."""
    return volumes_dir(layout) / name / "_data"
