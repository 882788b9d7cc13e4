#!/usr/bin/env bash
# Start (once) a rootless Docker daemon for a test user of our own, with
# Debian's dockerd-rootless.sh, rootlesskit, slirp4netns and uidmap, and load
# the test images into it.  Idempotent.  Prints the socket URL on stdout.
#
# Environment:
#   DDE_ROOTLESS_USER  the user (default dde-rootless; created with subordinate ids)
#   DDE_ROOTLESS_IMAGES images copied from the rootful daemon (default: the busybox test image)
set -euo pipefail
PROG=engines/rootless
USER_NAME=${DDE_ROOTLESS_USER:-dde-rootless}
IMAGES=${DDE_ROOTLESS_IMAGES:-dvc-docker-exec-test/busybox:latest}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/engines/lib.sh
. "$HERE/lib.sh"
need_root
ensure_packages docker.io rootlesskit slirp4netns uidmap curl

SCRIPT=$(command -v dockerd-rootless.sh || echo /usr/share/docker.io/contrib/dockerd-rootless.sh)
[ -x "$SCRIPT" ] || die "dockerd-rootless.sh not found (Debian's docker.io ships it in /usr/share/docker.io/contrib)"

ensure_user "$USER_NAME"
uid=$(id -u "$USER_NAME") gid=$(id -g "$USER_NAME")
home=$(getent passwd "$USER_NAME" | cut -d: -f6)

RUNDIR=/run/user/$uid
install -d -m 700 -o "$uid" -g "$gid" "$RUNDIR"
SOCK=$RUNDIR/docker.sock
LOG=$home/dockerd-rootless.log
answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

as_user() {
    setpriv --reuid="$uid" --regid="$gid" --init-groups \
        env -i HOME="$home" USER="$USER_NAME" XDG_RUNTIME_DIR="$RUNDIR" \
        PATH="/usr/share/docker.io/contrib:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" "$@"
}

if answers; then
    status "rootless dockerd of $USER_NAME already answering on $SOCK"
else
    rm -f "$SOCK"
    as_user setsid nohup "$SCRIPT" --data-root "$home/.local/share/docker" \
        </dev/null >>"$LOG" 2>&1 &
    wait_until answers 60 "$LOG" "rootless dockerd did not answer on $SOCK"
    status "started rootless dockerd for $USER_NAME on $SOCK (log $LOG)"
fi

for image in $IMAGES; do
    id=$(docker image inspect -f '{{.Id}}' "$image")
    if [ "$(as_user docker -H "unix://$SOCK" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" != "$id" ]; then
        docker save "$image" | as_user docker -H "unix://$SOCK" load -q >/dev/null
        status "loaded $image into the rootless daemon"
    fi
done
echo "unix://$SOCK"
