# Helpers for scripts/engines/*.sh (sourced).
status() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: ERROR: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts a daemon)"; }

# ensure_packages PKG...: apt-get install the Debian packages not installed yet
ensure_packages() {
    local missing=() p log
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get"
    log=$(mktemp /tmp/engines-apt.XXXXXX.log)
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get install ${missing[*]} failed (log $log)"
    fi
    status "installed ${missing[*]}"
}

# wait_until CHECK SECONDS LOG MESSAGE
wait_until() {
    local deadline=$((SECONDS + $2))
    until $1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            [ -r "$3" ] && tail -n 20 "$3" >&2
            die "$4"
        fi
        sleep 0.5
    done
}
