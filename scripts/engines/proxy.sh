#!/usr/bin/env bash
# Start (once) an API-filtering socket proxy in front of the Docker socket:
# Debian's HAProxy with the rules of Tecnativa's docker-socket-proxy
# (https://github.com/Tecnativa/docker-socket-proxy, haproxy.cfg): GET only
# unless POST=1, one switch per API section, everything else denied (403).
# Idempotent: a running proxy with the same configuration is reused.
# Prints the proxy's socket URL on stdout; its counters answer `show stat` on $DIR/stats.sock.
#
# Usage: proxy.sh [NAME]   (several proxies may run side by side, one per NAME)
# Environment (Tecnativa's names and defaults, except the timeout):
#   CONTAINERS IMAGES POST  (default 1 1 1: what dvc-docker-exec needs)
#   EVENTS PING VERSION     (default 1 1 1, as Tecnativa)
#   INFO NETWORKS VOLUMES EXEC ... (default 0)
#   PROXY_TIMEOUT           client/server inactivity timeout (default 10m, as Tecnativa)
#   DOCKER_SOCKET           upstream socket (default /var/run/docker.sock)
set -euo pipefail
PROG=engines/proxy
NAME=${1:-default}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/engines/lib.sh
. "$HERE/lib.sh"
need_root
ensure_packages haproxy curl

DIR=/run/dde-proxy/$NAME
SOCK=$DIR/proxy.sock
UPSTREAM=${DOCKER_SOCKET:-/var/run/docker.sock}
TIMEOUT=${PROXY_TIMEOUT:-10m}
mkdir -p "$DIR"

allow() {  # allow SECTION VAR DEFAULT
    local value=${!2:-$3}
    [ "$value" = 1 ] && echo "    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/$1 }"
    return 0
}
{
cat <<CFG
global
    pidfile $DIR/haproxy.pid
    maxconn 4000
    # its counters (show stat): the tests read how many connections it served and cut
    stats socket $DIR/stats.sock mode 600 level user

defaults
    mode http
    option http-server-close
    timeout http-request 10s
    timeout queue 1m
    timeout connect 10s
    timeout client $TIMEOUT
    timeout server $TIMEOUT
    timeout http-keep-alive 10s

backend dockerbackend
    server dockersocket $UPSTREAM

backend docker-events
    server dockersocket $UPSTREAM
    timeout server 0

frontend dockerfrontend
    bind $SOCK mode 666
CFG
if [ "${POST:-1}" = 1 ]; then :; else
    echo "    http-request deny unless METH_GET"
fi
allow containers CONTAINERS 1
allow images IMAGES 1
allow events EVENTS 1
allow _ping PING 1
allow version VERSION 1
for section in auth build commit configs distribution exec info networks nodes plugins secrets services session swarm system tasks volumes; do
    allow "$section" "$(echo "$section" | tr a-z A-Z)" 0
done
cat <<CFG
    http-request deny
    use_backend docker-events if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/events }
    default_backend dockerbackend
CFG
} >"$DIR/haproxy.cfg.new"

running() { [ -s "$DIR/haproxy.pid" ] && kill -0 "$(cat "$DIR/haproxy.pid")" 2>/dev/null; }
answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

if running && cmp -s "$DIR/haproxy.cfg.new" "$DIR/haproxy.cfg" && answers; then
    rm -f "$DIR/haproxy.cfg.new"
    status "proxy $NAME already answering on $SOCK"
else
    if running; then kill "$(cat "$DIR/haproxy.pid")"; sleep 0.5; fi
    mv "$DIR/haproxy.cfg.new" "$DIR/haproxy.cfg"
    haproxy -c -q -f "$DIR/haproxy.cfg" || die "invalid configuration $DIR/haproxy.cfg"
    rm -f "$SOCK"
    haproxy -D -f "$DIR/haproxy.cfg" >>"$DIR/haproxy.log" 2>&1 || die "haproxy did not start (log $DIR/haproxy.log)"
    wait_until answers 15 "$DIR/haproxy.log" "proxy $NAME did not answer on $SOCK"
    status "started haproxy $NAME (timeout $TIMEOUT) on $SOCK -> $UPSTREAM"
fi
echo "unix://$SOCK"
