# Shared by scripts/setup-host.sh and bench/install-podman.sh: name from trixie (or sid) only what
# apt needs to install a set of packages, keeping everything else on the stable suite.
# Callers use set -euo pipefail; nothing here pipes into grep -q (SIGPIPE would fail the pipeline).

in_release() { # in_release PKG SUITE: does SUITE carry PKG?
    local policy
    policy=$(apt-cache policy "$1" 2>/dev/null)
    grep -qE "[[:space:]]$2/main " <<<"$policy"
}

has_item() { # has_item X LIST...: is X one of LIST?
    local x=$1 y; shift
    for y in "$@"; do [ "$x" = "$y" ] && return 0; done
    return 1
}

resolve_set() {
    # Name from trixie (or sid) every dependency apt cannot meet and
    # every package it would remove, until apt accepts the set. Prints the final argument list.
    local -a pkgs=("$@")
    local i out n added
    for i in $(seq 1 40); do
        out=$(apt-get install -s -y --no-install-recommends "${pkgs[@]}" 2>&1 || true)
        added=0
        local -a want=()
        if grep -q '^E:' <<<"$out"; then
            mapfile -t want < <(grep -oE '(Depends|Breaks|PreDepends): [a-z0-9.+-]+' <<<"$out" | awk '{print $2}' | sort -u)
        else
            mapfile -t want < <(awk '$1=="Remv"{print $2}' <<<"$out" | sort -u)
        fi
        for n in "${want[@]}"; do
            if has_item "$n/trixie" "${pkgs[@]}"; then
                if grep -q '^E:' <<<"$out" && in_release "$n" sid; then
                    pkgs=("${pkgs[@]/#$n\/trixie/$n/sid}"); added=1
                fi
                continue
            fi
            if has_item "$n" "${pkgs[@]}" || has_item "$n/trixie" "${pkgs[@]}" || has_item "$n/sid" "${pkgs[@]}"; then
                continue
            fi
            if in_release "$n" trixie; then pkgs+=("$n/trixie"); added=1; fi
        done
        if [ "$added" = 0 ]; then
            grep -q '^E:' <<<"$out" && { printf '%s\n' "$out" | grep -A30 'unmet' >&2; return 1; }
            printf '%s\n' "${pkgs[@]}"
            return 0
        fi
    done
    return 1
}
