#!/usr/bin/env bash
# Make sure a Docker engine answers and that the host tools the test images
# need are installed (busybox-static, debootstrap, docker-compose, docker-registry,
# apache2-utils for htpasswd).
#
# Idempotent and quiet: prints one status line, or the tail of the relevant
# log when something fails.  On a machine with only the docker client it
# installs docker.io (Debian/Ubuntu apt) and starts dockerd in the background
# (nohup + setsid, log in $DOCKERD_LOG), then waits for `docker info`.
#
# Environment:
#   DOCKERD_LOG      dockerd log file            (default /var/log/dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for dockerd (default 60)
#   DOCKERD_ARGS     extra arguments for dockerd (default none)
#   DOCKERD_PIDFILE  pid file of a dockerd that may be starting up already
#                    (default /var/run/docker.pid)
set -euo pipefail
# Daemons started here outlive this script: they get / as working directory, not the
# caller's (a test checkout deleted later left a daemon in a deleted folder,
# where conmon fails with "Failed to get working directory" and every run breaks).
cd /

PROG=ensure-docker
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}

die() { echo "$PROG: ERROR: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing"
    SUDO=(sudo -n)
fi

docker_ok() {
    command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Packages still to install.  A binary already on PATH (e.g. docker from
# docker-ce) counts as present so we do not fight another packaging.
missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
# scratch images need a *static* busybox: require the Debian package.
pkg_installed busybox-static || missing+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# a registry on loopback: the pull-policy tests push and pull through it
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
# htpasswd: the registry-login tests run a registry with basic auth
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)

install_missing() {
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    local log
    log=$(mktemp /tmp/ensure-docker-apt.XXXXXX.log)
    # de-duplicate
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if ! { "${SUDO[@]}" apt-get update -q &&
           "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
               apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get install ${missing[*]} failed (full log: $log)"
    fi
    rm -f "$log"
    installed="installed ${missing[*]}; "
    missing=()
}

installed=""
if docker_ok; then
    install_missing
    echo "$PROG: ok: ${installed}docker $(docker version --format '{{.Server.Version}}' 2>/dev/null) already answering"
    exit 0
fi

# Engine not answering: we need dockerd too.
command -v dockerd >/dev/null 2>&1 || pkg_installed docker.io || missing+=(docker.io)
install_missing

# Installing docker.io on a systemd host starts the service by itself.
if docker_ok; then
    echo "$PROG: ok: ${installed}docker $(docker version --format '{{.Server.Version}}') answering"
    exit 0
fi

command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"

# Start dockerd unless one is already starting up (then just wait for it).
started="" pid=""
if running=$(cat "$DOCKERD_PIDFILE" 2>/dev/null) && [ -n "$running" ] &&
        [ "$(cat "/proc/$running/comm" 2>/dev/null)" = dockerd ]; then
    started="waited for starting dockerd pid $running; "
else
    "${SUDO[@]}" mkdir -p "$(dirname "$DOCKERD_LOG")"
    "${SUDO[@]}" setsid nohup sh -c "exec dockerd ${DOCKERD_ARGS:-} >>'$DOCKERD_LOG' 2>&1" \
        </dev/null >/dev/null 2>&1 &
    pid=$!
    started="started dockerd (log $DOCKERD_LOG); "
fi

fail() {
    [ -r "$DOCKERD_LOG" ] && tail -n 30 "$DOCKERD_LOG" >&2
    die "$*"
}
deadline=$((SECONDS + DOCKERD_TIMEOUT))
until docker_ok; do
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "docker daemon did not answer within ${DOCKERD_TIMEOUT}s (log: $DOCKERD_LOG)"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
        fail "dockerd exited during start-up (log: $DOCKERD_LOG)"
    fi
    sleep 1
done

echo "$PROG: ok: ${installed}${started}docker $(docker version --format '{{.Server.Version}}') answering"
