#!/usr/bin/env bash
# The whole suite: lint (ruff, mypy --strict), unit tests, and the real-stack tests (root, runc,
# crun, CRIU, conmon, and the peers: podman, containerd, docker-registry, skopeo). Called by `make test` after the host setup, and by .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${VENV:-.venv}/bin/python
echo "==> ruff"
$py -m ruff check src tests bench
$py -m ruff format --check src tests bench
echo "==> mypy --strict"
$py -m mypy src tests bench
echo "==> peers"
# podman, skopeo, docker-registry, containerd 2.1 + the CRI proto, grpcio(-tools): the interop tests
# drive them (a skipped test fails in CI). Idempotent; quick when they are installed.
VENV=${VENV:-.venv} bash scripts/setup-peers.sh
echo "==> pytest"
# A temporary directory of this run's own: pytest's shared default prunes other runs' directories.
base=$(mktemp -d /tmp/amber-tests.XXXXXX)
trap 'rm -rf --one-file-system "$base"' EXIT
$py -m pytest -p no:cacheprovider --basetemp "$base/t" "$@"
