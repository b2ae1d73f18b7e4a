#!/usr/bin/env bash
# Prepare this host for amber: CRIU >= 4.2, runc, crun with CRIU, conmon, iptables, busybox-static,
# pycriu, checkpointctl; netavark, aardvark-dns, nftables and conntrack for container networks; the
# cgroup fix crun needs on hybrid hosts; amber's virtual environment.
#
# Safe to run twice: every step checks first and says what it did or why it did nothing.
# Facts behind each step: ../shared/notes/host-setup.md (Debian 12 and 13 hosts).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${AMBER_VENV:-$here/.venv}"
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n==> %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf 'hint: %s\n' "$2" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "the host setup must run as root (it installs packages and mounts cgroups)" \
    "run it with sudo, or as root: sudo make demo"
command -v apt-get >/dev/null || die "this setup knows Debian only (no apt-get here)" \
    "install CRIU >= 4.2, runc, crun (+CRIU), conmon, iptables, busybox-static and pycriu by hand"

# ---------------------------------------------------------------------------------------------
# 1. Packages. What we need, and the oldest version that works here (host-setup.md).
criu_ok() {
    command -v criu >/dev/null || return 1
    local v; v=$(criu --version 2>/dev/null | awk '/^Version/{print $2}')
    dpkg --compare-versions "${v:-0}" ge 4.2
}
crun_ok() { command -v crun >/dev/null && crun --version 2>/dev/null | grep -q '+CRIU'; }
pycriu_ok() { /usr/bin/python3 -c 'import pycriu' 2>/dev/null; }
tools_ok() {
    local t
    for t in runc conmon iptables-restore busybox checkpointctl zstd; do
        command -v "$t" >/dev/null || [ -x "/usr/libexec/podman/$t" ] || [ -x "/bin/$t" ] || return 1
    done
}
venv_module_ok() { /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; }
netavark=/usr/lib/podman/netavark
netavark_version() { "$netavark" --version 2>/dev/null | awk '{print $2}'; }
# netavark 1.14 (trixie) is the version measured here; bookworm's 1.4 has no nftables firewall driver.
netavark_ok() { [ -x "$netavark" ] && dpkg --compare-versions "$(netavark_version)" ge 1.14; }
aardvark_ok() { [ -x /usr/lib/podman/aardvark-dns ]; }
net_ok() { netavark_ok && aardvark_ok && command -v nft >/dev/null && command -v conntrack >/dev/null; }
# Where the installed version of a package came from ("http://mirror trixie/main").
origin() { apt-cache policy "$1" | awk '/\*\*\*/{getline; print $2, $3; exit}'; }
report() { local p; for p in "$@"; do say "$(dpkg-query -W -f '${Package} ${Version}' "$p") from $(origin "$p")"; done; }
# Other installs may hold the dpkg lock for a while: wait for it rather than fail.
apt_install() { apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"; }

add_suites() {
    # trixie and sid sources with low pins: nothing moves to them unless named below.
    local mirror
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    if [ -z "$mirror" ]; then
        mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" \
        "add your Debian mirror to the apt sources, then run this again"
    local src=/etc/apt/sources.list.d/amber-extra.sources pin=/etc/apt/preferences.d/amber-extra
    local want
    want=$(printf 'Types: deb\nURIs: %s\nSuites: trixie sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror")
    if [ ! -f "$src" ] || [ "$(cat "$src")" != "$want" ]; then
        printf '%s\n' "$want" > "$src"
        say "added trixie and sid from $mirror to $src"
        rm -f /var/lib/apt/lists/.amber-updated
    else
        say "trixie and sid sources already in $src"
    fi
    cat > "$pin" <<'EOF'
# amber: trixie and sid are only used for the packages named by scripts/setup-host.sh
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=sid
Pin-Priority: 50
EOF
    say "pinned trixie (100) and sid (50) below the stable suites in $pin"
}

apt_update() {
    if [ ! -f /var/lib/apt/lists/.amber-updated ] || \
       [ -n "$(find /var/lib/apt/lists/.amber-updated -mmin +1440 2>/dev/null)" ]; then
        apt-get update -q >/dev/null
        touch /var/lib/apt/lists/.amber-updated
        say "apt-get update done"
    fi
}

source "$(dirname "${BASH_SOURCE[0]}")/apt-lib.sh"

install_packages() {
    local -a base=(conmon iptables iproute2 busybox-static zstd python3-venv python3-protobuf)
    local -a named=()
    if criu_ok && crun_ok && pycriu_ok && tools_ok && venv_module_ok; then
        say "criu $(criu --version | awk '/^Version/{print $2}'), crun with +CRIU, runc, conmon, pycriu, checkpointctl: present"
        return 0
    fi
    add_suites
    apt_update
    # CRIU >= 4.2 is only in sid; crun with +CRIU and checkpointctl come from trixie on bookworm.
    named=(criu/sid libcompel1/sid libcriu2/sid python3-pycriu/sid)
    if ! crun_ok; then named+=(crun/trixie); fi
    if ! command -v runc >/dev/null; then named+=(runc/trixie); fi
    if ! command -v checkpointctl >/dev/null; then named+=(checkpointctl/trixie); fi
    # glibc moves as one: every installed package built from it follows libc6 to trixie if it must.
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$codename" = bookworm ]; then
        mapfile -t glibc < <(dpkg-query -W -f '${Package} ${source:Package}\n' | awk '$2=="glibc"{print $1 "/trixie"}')
        named+=("${glibc[@]}")
    fi
    say "resolving the package set (named: ${named[*]})"
    local resolved
    resolved=$(resolve_set "${base[@]}" "${named[@]}") || die "apt cannot install CRIU 4.2 and crun here" \
        "see the unmet dependencies above; the stable suites may have moved on"
    local -a set
    mapfile -t set <<<"$resolved"
    say "installing: ${set[*]}"
    apt_install "${set[@]}" >/tmp/amber-apt.log 2>&1 || {
        tail -30 /tmp/amber-apt.log >&2
        die "apt-get install failed (full log: /tmp/amber-apt.log)" "fix the apt problem shown above, then run this again"
    }
    report criu crun runc conmon python3-pycriu checkpointctl iptables busybox-static libc6
}

# netavark makes each network's bridge, veth pairs, addresses and NAT (with nft); aardvark-dns is
# its DNS server (podman's teardown fails without it); conntrack copies NAT state for TCP moves.
install_network() {
    if net_ok; then
        say "netavark $(netavark_version), aardvark-dns, nft, conntrack: present"
        return 0
    fi
    add_suites
    apt_update
    local -a named=(nftables conntrack)
    if ! netavark_ok; then named+=(netavark/trixie); fi
    if ! aardvark_ok; then named+=(aardvark-dns/trixie); fi
    say "resolving the package set (named: ${named[*]})"
    local resolved
    resolved=$(resolve_set "${named[@]}") || die "apt cannot install netavark 1.14 and nftables here" \
        "see the unmet dependencies above; the stable suites may have moved on"
    local -a set
    mapfile -t set <<<"$resolved"
    say "installing: ${set[*]}"
    apt_install "${set[@]}" >/tmp/amber-apt-net.log 2>&1 || {
        tail -30 /tmp/amber-apt-net.log >&2
        die "apt-get install failed (full log: /tmp/amber-apt-net.log)" "fix the apt problem shown above, then run this again"
    }
    report netavark aardvark-dns nftables conntrack
}

# sshd for amber migrate's two-host tests (an sshd per test host namespace, never a system one).
# openssh-client follows glibc to trixie, so bookworm's server no longer installs: name trixie's.
# A policy-rc.d exiting 101 keeps the package from starting a system sshd on port 22.
install_sshd() {
    if [ -x /usr/sbin/sshd ] && [ -x /usr/lib/openssh/sftp-server ]; then
        say "sshd $(/usr/sbin/sshd -V 2>&1 | awk '{print $1; exit}'): present (amber migrate's tests)"
        return 0
    fi
    add_suites
    apt_update
    local resolved
    resolved=$(resolve_set openssh-server/trixie openssh-sftp-server/trixie) \
        || die "apt cannot install openssh-server here" "see the unmet dependencies above"
    local -a set
    mapfile -t set <<<"$resolved"
    local rc=/usr/sbin/policy-rc.d had=0
    if [ -e "$rc" ]; then had=1; cp -p "$rc" "$rc.amber-saved"; fi
    printf '#!/bin/sh\nexit 101\n' >"$rc"; chmod 755 "$rc"
    say "installing: ${set[*]} (no system sshd is started)"
    local ok=0
    apt_install "${set[@]}" >/tmp/amber-apt-ssh.log 2>&1 || ok=1
    if [ "$had" = 1 ]; then mv "$rc.amber-saved" "$rc"; else rm -f "$rc"; fi
    [ "$ok" = 0 ] || { tail -30 /tmp/amber-apt-ssh.log >&2
        die "apt-get install failed (full log: /tmp/amber-apt-ssh.log)" "fix the apt problem shown above, then run this again"; }
    report openssh-server openssh-sftp-server
}

# ---------------------------------------------------------------------------------------------
# 2. cgroups: crun refuses hybrid hosts whose cgroup2 root still holds controllers.
fix_cgroups() {
    local ctl=/sys/fs/cgroup/unified/cgroup.controllers
    if [ -f "$ctl" ] && [ -n "$(cat "$ctl")" ]; then
        local c
        for c in $(cat "$ctl"); do
            if [ ! -d "/sys/fs/cgroup/$c" ] || ! mountpoint -q "/sys/fs/cgroup/$c"; then
                mkdir -p "/sys/fs/cgroup/$c"
                mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
                say "moved the '$c' controller from cgroup2 to a v1 hierarchy at /sys/fs/cgroup/$c (crun needs an empty cgroup2 root on hybrid hosts)"
            fi
        done
    else
        say "cgroup layout already suits crun"
    fi
}

# ---------------------------------------------------------------------------------------------
# 3. Checks: CRIU works on this kernel; both runtimes are checkpoint-capable.
check_stack() {
    local out
    out=$(criu check 2>&1) || die "criu check failed: $(tail -3 <<<"$out")" \
        "CRIU $(criu --version | awk '/^Version/{print $2}') does not work with kernel $(uname -r)"
    say "criu check: $(tail -1 <<<"$out")"
    crun --version | grep -q '+CRIU' || die "crun is built without CRIU" "install crun from Debian 13 (trixie) or newer"
    runc checkpoint --help >/dev/null 2>&1 || die "runc cannot checkpoint" "install runc >= 1.1"
    netavark_ok || die "netavark >= 1.14 is missing at $netavark" "install netavark from Debian 13 (trixie) or newer"
    say "netavark $(netavark_version) at $netavark"
    out=$(nft list tables 2>&1) || die "nft cannot talk to the kernel: $(tail -1 <<<"$out")" \
        "load the nf_tables module (modprobe nf_tables) or use a kernel with CONFIG_NF_TABLES"
    say "nft $(nft --version | awk '{print $2}'): nf_tables works"
    conntrack --version >/dev/null 2>&1 || die "conntrack does not run" "install the conntrack package"
    say "conntrack $(conntrack --version 2>&1 | awk '{print $2; exit}'): present (NAT state for TCP across moves)"
    if criu check --feature mem_dirty_track >/dev/null 2>&1; then
        say "kernel tracks dirty memory: pre-checkpoints possible"
    else
        say "kernel does not track dirty memory (CONFIG_MEM_SOFT_DIRTY): amber refuses --pre-checkpoint here"
    fi
}

# ---------------------------------------------------------------------------------------------
# 4. amber's virtual environment, from the system Python so that pycriu imports.
setup_venv() {
    local stamp="$venv/.amber-installed"
    local sum
    sum=$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] \
        && "$venv/bin/python" -c 'import amber, pycriu' 2>/dev/null; then
        say "virtual environment $venv is up to date"
        return 0
    fi
    local log=/tmp/amber-pip.log
    if ! "$venv/bin/python" -c 'import pycriu' 2>/dev/null; then
        /usr/bin/python3 -m venv --system-site-packages "$venv"
        "$venv/bin/pip" install -q --upgrade pip >"$log" 2>&1 || true  # an old pip still works
    fi
    if ! "$venv/bin/pip" install -q -e "$here[dev]" >"$log" 2>&1; then
        grep -v '^WARNING: Location' "$log" | tail -20 >&2
        die "pip could not install amber's Python dependencies (full log: $log)" \
            "check that PyPI is reachable, then run this again"
    fi
    "$venv/bin/python" -c 'import amber, pycriu' || die "amber or pycriu does not import in $venv" \
        "remove $venv and run this again"
    echo "$sum" > "$stamp"
    say "installed amber and its dependencies into $venv"
}

# amber is installed editable, so pip writes no bytecode for it; where PYTHONDONTWRITEBYTECODE
# is set (as on this machine kind) Python would then compile every module on every command
# (0.06 s of each `amber ps`). compileall writes what is stale and leaves the rest.
compile_bytecode() {
    "$venv/bin/python" -m compileall -q "$here/src/amber" >/dev/null \
        || die "python could not compile amber's modules in $here/src/amber" "check that the directory is writable"
    say "bytecode of src/amber is up to date"
}

step "Packages: CRIU >= 4.2, runc, crun (+CRIU), conmon, iptables, busybox-static, pycriu, checkpointctl"
install_packages
step "Network: netavark, aardvark-dns, nftables, conntrack"
install_network
step "sshd (amber migrate's two-host tests)"
install_sshd
step "cgroups"
fix_cgroups
step "Checking the stack"
check_stack
step "Python environment"
setup_venv
compile_bytecode
step "Host ready"
