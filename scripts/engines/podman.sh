#!/usr/bin/env bash
# Start (once) a rootful Podman service with its Docker-compatible API on a
# unix socket, and load the test images into it.  Idempotent: a service that
# answers is reused.  Prints the socket URL on stdout (status on stderr).
#
# Why its own storage/config: other users of this machine keep their own
# /var/lib/containers; ours lives under $DDE_PODMAN_DIR.
# Why default_ulimits: root here lacks CAP_SYS_RESOURCE, so crun's default
# rlimits fail ("error setting rlimit", field notes "Podman on this machine").
#
# Rootless: `podman.sh --rootless` runs the service as a test user of our own
# (DDE_PODMAN_USER, default dde-podman, created with subordinate ids), its
# socket in /run/user/UID/podman/podman.sock, its storage in that user's home.
#
# Environment:
#   DDE_PODMAN_DIR   state folder (default /var/lib/dde-podman; rootless: ~/.dde-podman)
#   DDE_PODMAN_SOCK  socket path  (default /run/dde-podman/podman.sock)
#   DDE_PODMAN_IMAGES images copied from Docker (default: the busybox test image)
set -euo pipefail
PROG=engines/podman
DIR=${DDE_PODMAN_DIR:-/var/lib/dde-podman}
SOCK=${DDE_PODMAN_SOCK:-/run/dde-podman/podman.sock}
IMAGES=${DDE_PODMAN_IMAGES:-dvc-docker-exec-test/busybox:latest}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/engines/lib.sh
. "$HERE/lib.sh"

need_root
ensure_packages podman catatonit runc conmon curl

AS=()  # how to run podman: as root, or as the rootless user
if [ "${1:-}" = --rootless ]; then
    ensure_packages uidmap slirp4netns
    USER_NAME=${DDE_PODMAN_USER:-dde-podman}
    ensure_user "$USER_NAME"
    uid=$(id -u "$USER_NAME") gid=$(id -g "$USER_NAME") home=$(getent passwd "$USER_NAME" | cut -d: -f6)
    install -d -m 700 -o "$uid" -g "$gid" "/run/user/$uid"
    DIR=${DDE_PODMAN_DIR:-$home/.dde-podman}
    SOCK=/run/user/$uid/podman/podman.sock
    AS=(setpriv --reuid="$uid" --regid="$gid" --init-groups env -i HOME="$home" USER="$USER_NAME"
        XDG_RUNTIME_DIR="/run/user/$uid" PATH=/usr/bin:/bin:/usr/sbin:/sbin)
    install -d -m 755 -o "$uid" -g "$gid" "$DIR"
    install -d -m 700 -o "$uid" -g "$gid" "$(dirname "$SOCK")"
fi

mkdir -p "$DIR" "$(dirname "$SOCK")"
CONF=$DIR/containers.conf
cat >"$CONF.new" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
init_path = "/usr/bin/catatonit"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$DIR/events.log"
runtime = "runc"
CONF
# why runc: crun refuses this host's hybrid cgroup layout ("cgroups in hybrid mode not supported")
PIDFILE=$DIR/service.pid
if ! cmp -s "$CONF.new" "$CONF" && [ -s "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true  # restart with the new configuration
    sleep 1
fi
mv "$CONF.new" "$CONF"
chmod 644 "$CONF"
if [ "${#AS[@]}" -gt 0 ]; then
    PODMAN=("${AS[@]}" CONTAINERS_CONF="$CONF" podman)  # rootless: the user's own storage
else
    export CONTAINERS_CONF=$CONF
    PODMAN=(podman --root "$DIR/storage" --runroot "$DIR/run" --storage-driver overlay)
fi

answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

if ! answers; then
    rm -f "$SOCK"
    setsid nohup "${PODMAN[@]}" system service --time=0 "unix://$SOCK" \
        </dev/null >>"$DIR/service.log" 2>&1 &
    echo $! >"$PIDFILE"
    wait_until answers 30 "$DIR/service.log" "podman system service did not answer on $SOCK"
    status "started podman $(podman --version | awk '{print $3}') service on $SOCK (log $DIR/service.log)"
else
    status "podman service already answering on $SOCK"
fi
[ "${#AS[@]}" -gt 0 ] || chmod 666 "$SOCK"  # why: non-root tests use it too, as they use the docker group's socket

for image in $IMAGES; do
    id=$(docker image inspect -f '{{.Id}}' "$image")
    if [ "$("${PODMAN[@]}" image inspect -f '{{.Id}}' "$image" 2>/dev/null | sed 's/^/sha256:/')" != "$id" ]; then
        docker save "$image" | "${PODMAN[@]}" load -q >/dev/null
        status "loaded $image into podman"
    fi
done
echo "unix://$SOCK"
