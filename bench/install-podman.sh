#!/usr/bin/env bash
# Install podman 5.4 (and checkpointctl) from Debian 13 "trixie" for bench/run.py's side-by-side
# comparison, without moving the rest of the host.
#
# Run scripts/setup-host.sh first: it adds the trixie and sid sources pinned low (100 and 50), so
# nothing moves to them unless named. This script names podman and the container libraries that
# must match it (containers-common, containers-image, netavark, the CNI plugins) from trixie, then
# lets apt add any dependency it cannot meet otherwise, also from trixie, one by one. It refuses
# to install anything if apt would remove a package.
#
# resolve_set, in_release and has_item come from scripts/apt-lib.sh, shared with the host setup.
#
# Safe to run twice: it does nothing when podman >= 5 is installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf 'hint: %s\n' "$2" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "installing podman needs root" "run it as root: sudo bench/install-podman.sh"
command -v apt-get >/dev/null || die "this script knows Debian only (no apt-get here)" \
    "install podman >= 5 and checkpointctl by hand; bench/run.py finds them on PATH"

if command -v podman >/dev/null; then
    v=$(podman --version | awk '{print $3}')
    if dpkg --compare-versions "$v" ge 5; then
        say "podman $v is installed: nothing to do"
        exit 0
    fi
    die "podman $v is installed, older than 5" "remove it or upgrade it to podman 5 by hand"
fi
[ -f /etc/apt/sources.list.d/amber-extra.sources ] || die "the trixie sources are missing" \
    "run scripts/setup-host.sh (or make demo) first"

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/apt-lib.sh"

# podman 5 with bookworm's containers-common 0.50 / netavark 1.4 would install, but run with
# configuration and network tools two major versions older: name them from trixie too.
named=(podman/trixie golang-github-containers-common/trixie golang-github-containers-image/trixie
       netavark/trixie containernetworking-plugins/trixie)
command -v checkpointctl >/dev/null || named+=(checkpointctl/trixie)
say "resolving the package set (named: ${named[*]})"
resolved=$(resolve_set "${named[@]}") || die "apt cannot install podman 5 here" \
    "see the unmet dependencies above; the benchmark runs without podman (amber's figures only)"
mapfile -t set <<<"$resolved"

plan=$(apt-get install -s -y --no-install-recommends "${set[@]}" 2>&1)
if grep -q '^Remv' <<<"$plan"; then
    grep '^Remv' <<<"$plan" >&2
    die "installing podman would remove the packages above: not installing it" \
        "the benchmark runs without podman (amber's figures only)"
fi
say "installing: ${set[*]}"
say "$(grep -c '^Inst' <<<"$plan") packages, none removed"
apt-get install -y -q --no-install-recommends "${set[@]}" >/tmp/amber-podman-apt.log 2>&1 || {
    tail -30 /tmp/amber-podman-apt.log >&2
    die "apt-get install failed (full log: /tmp/amber-podman-apt.log)" "fix the apt problem shown above, then run this again"
}
for p in podman golang-github-containers-common netavark checkpointctl; do
    say "$(dpkg-query -W -f '${Package} ${Version}' "$p") from $(apt-cache policy "$p" | awk '/\*\*\*/{getline; print $2, $3; exit}')"
done
