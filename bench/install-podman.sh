#!/usr/bin/env bash
# Install podman 5.4 (and checkpointctl) from Debian 13 "trixie" for bench/run.py's side-by-side
# comparison, without moving the rest of the host. The logic is shared with the interop tests:
# scripts/setup-peers.sh (its "podman" peer) resolves the set, refuses removals and starts no service.
# Safe to run twice: it does nothing when podman >= 5 is installed.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup-peers.sh" podman
