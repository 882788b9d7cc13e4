# Helpers for scripts/engines/*.sh (sourced).
# Daemons started here outlive this script: they get / as working directory, not the
# caller's (a test checkout deleted later left Podman's service in a deleted folder,
# where conmon fails with "Failed to get working directory" and every run breaks).
cd /
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

# ensure_user NAME: a test user with subordinate ids, and /dev/net/tun usable by it (slirp4netns)
ensure_user() {
    if ! id "$1" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/sh "$1"
        status "created user $1"
    fi
    # Debian's useradd adds subordinate ids; an older user may lack them
    if ! grep -q "^$1:" /etc/subuid 2>/dev/null || ! grep -q "^$1:" /etc/subgid 2>/dev/null; then
        local start=$((1100000 + ($(id -u "$1") % 100) * 65536))
        usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$1"
    fi
    # why: slirp4netns opens /dev/net/tun as the user; it is 0600 on these machines (usual mode: 0666)
    [ -c /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
    chmod 666 /dev/net/tun
}
