#!/usr/bin/env bash
# Install the real peers the interop tests drive (tests/peers/), and say what came from where:
#   podman     podman 5.4 + aardvark-dns + checkpointctl (trixie), with the container libraries it needs
#   skopeo     skopeo (trixie): copies images between OCI archives, registries and podman's store
#   registry   docker-registry (bookworm): a real OCI registry, run on 127.0.0.1 by the tests
#   containerd containerd 2.1 (sid; 2.4 dropped the CRI restore path) and the CRI api.proto
#   grpc       grpcio + grpcio-tools in the project's venv (VENV, default .venv): the CRI client
# Usage: scripts/setup-peers.sh [PEER...]   (no argument: all of them). As root. Safe to run twice.
#
# Run scripts/setup-host.sh first: it adds the trixie and sid sources pinned low (100 and 50), so
# nothing moves to them unless named. Packages are named from trixie/sid here; resolve_set (from
# scripts/apt-lib.sh) names any dependency apt cannot meet otherwise. Nothing is installed if apt
# would remove a package. No system service is started: a policy-rc.d that exits 101 is in place
# during every install. bench/install-podman.sh calls this script for podman.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

say() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf 'hint: %s\n' "$2" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "installing the peers needs root" "run it as root: sudo scripts/setup-peers.sh"
command -v apt-get >/dev/null || die "this script knows Debian only (no apt-get here)" \
    "install podman 5.4, skopeo, docker-registry and containerd 2.1-2.3 by hand; the tests find them on PATH"
[ -f /etc/apt/sources.list.d/amber-extra.sources ] || die "the trixie and sid sources are missing" \
    "run scripts/setup-host.sh (or make setup) first"

# shellcheck source=apt-lib.sh
source "$here/apt-lib.sh"

origin() { # origin PKG: "PKG VERSION from SUITE"
    local v
    v=$(dpkg-query -W -f '${Version}' "$1" 2>/dev/null) || { printf '%s (not installed)' "$1"; return; }
    printf '%s %s from %s' "$1" "$v" \
        "$(apt-cache policy "$1" | awk '/\*\*\*/{getline; print $2, $3; exit}')"
}

no_services_on() { # a policy-rc.d that exits 101, unless one is already there (ours is removed after)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# amber setup-peers: never start services during installs\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
}

install_named() { # install_named WHAT PKG/SUITE...: resolve, refuse removals, install with services off
    local what=$1 resolved plan log=/tmp/amber-peers-apt.log
    shift
    say "$what: resolving the package set (named: $*)"
    resolved=$(resolve_set "$@") || die "apt cannot install $what here" "see the unmet dependencies above"
    local -a set
    mapfile -t set <<<"$resolved"
    plan=$(apt-get install -s -y --no-install-recommends "${set[@]}" 2>&1)
    if grep -q '^Remv' <<<"$plan"; then
        grep '^Remv' <<<"$plan" >&2
        die "installing $what would remove the packages above: not installing it" \
            "install $what by hand, or run the tests without it (they skip)"
    fi
    say "$what: installing ${set[*]} ($(grep -c '^Inst' <<<"$plan") packages, none removed)"
    no_services_on
    apt-get install -y -q --no-install-recommends "${set[@]}" >"$log" 2>&1 || {
        tail -30 "$log" >&2
        die "apt-get install failed for $what (full log: $log)" "fix the apt problem shown above, then run this again"
    }
}

peer_podman() {
    local v named
    if command -v podman >/dev/null; then
        v=$(podman --version | awk '{print $3}')
        dpkg --compare-versions "$v" ge 5 || die "podman $v is installed, older than 5" "remove it or upgrade it by hand"
    else
        # podman 5 with bookworm's containers-common 0.50 / netavark 1.4 would install, but run with
        # configuration and network tools two major versions older: name them from trixie too.
        named=(podman/trixie golang-github-containers-common/trixie golang-github-containers-image/trixie
            netavark/trixie containernetworking-plugins/trixie)
        install_named podman "${named[@]}"
    fi
    local extra=()
    dpkg-query -W -f '${Status}' aardvark-dns 2>/dev/null | grep -q 'ok installed' || extra+=(aardvark-dns/trixie)
    command -v checkpointctl >/dev/null || extra+=(checkpointctl/trixie)
    [ ${#extra[@]} = 0 ] || install_named "podman's helpers" "${extra[@]}"
    for p in podman golang-github-containers-common netavark aardvark-dns checkpointctl; do say "$(origin "$p")"; done
}

peer_skopeo() {
    command -v skopeo >/dev/null || install_named skopeo skopeo/trixie
    say "$(origin skopeo)"
}

peer_registry() {
    [ -x /usr/bin/docker-registry ] || install_named docker-registry docker-registry
    say "$(origin docker-registry)"
}

peer_containerd() {
    local v proto
    if command -v containerd >/dev/null; then
        v=$(containerd --version | awk '{print $3}' | sed 's/^v//; s/~.*//; s/+.*//')
    else
        v=0
    fi
    if dpkg --compare-versions "$v" lt 2.1 || dpkg --compare-versions "$v" ge 2.4; then
        # containerd 2.1 from sid depends on nothing newer than bookworm has (checked with -s).
        install_named containerd containerd/sid
    fi
    say "$(origin containerd)"
    if ! dpkg-query -W -f '${Status}' golang-github-kubernetes-cri-api-dev 2>/dev/null | grep -q 'ok installed'; then
        install_named "the CRI api.proto" golang-github-kubernetes-cri-api-dev/trixie
    fi
    say "$(origin golang-github-kubernetes-cri-api-dev)"
    proto=$(dpkg -L golang-github-kubernetes-cri-api-dev | grep '/runtime/v1/api.proto$' | head -1)
    [ -n "$proto" ] || die "golang-github-kubernetes-cri-api-dev has no runtime/v1/api.proto" \
        "find the CRI api.proto and set AMBER_CRI_PROTO to its path"
    say "CRI api.proto: $proto"
}

peer_grpc() {
    local py=${VENV:-$root/.venv}/bin/python
    [ -x "$py" ] || die "no Python at $py" "run scripts/setup-host.sh first, or set VENV to the project's venv"
    if ! "$py" -c 'import grpc, grpc_tools' 2>/dev/null; then
        say "grpc: pip install grpcio grpcio-tools into ${VENV:-$root/.venv}"
        "$py" -m pip install -q grpcio grpcio-tools || die "pip could not install grpcio, grpcio-tools" \
            "install them into the venv by hand: $py -m pip install grpcio grpcio-tools"
    fi
    say "grpc: $("$py" -c 'import grpc; print("grpcio", grpc.__version__)') from PyPI ($py)"
}

peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(podman skopeo registry containerd grpc)
for p in "${peers[@]}"; do
    case $p in
    podman | skopeo | registry | containerd | grpc) echo "==> $p"; "peer_$p" ;;
    *) die "unknown peer: $p" "name one or more of: podman skopeo registry containerd grpc" ;;
    esac
done
