#!/usr/bin/env bash
# A real multi-node Docker Swarm on one machine, for the Swarm backend's tests
# and benchmarks (issue 11). Each node is a second Docker Engine in its own
# network namespace; the nodes' veths meet on a bridge that lives in a
# namespace of its own, so the host's iptables (FORWARD DROP from the main
# dockerd) never see the traffic. The nodes share the host's filesystem,
# which stands in for the shared filesystem (NFS) a real cluster needs.
#
# Why not Docker-in-Docker: privileged containers are refused on these
# machines ("unable to apply caps"). Why nsenter and not `ip netns exec`: the
# latter remounts /sys and dockerd fails with "Devices cgroup isn't mounted".
#
#   scripts/engines/swarm-netns.sh up [N]   start a registry and N nodes (default 3), join them; print
#                                           DDE_SWARM_REGISTRY=<addr>, then the manager's DOCKER_HOST
#                                           (the last node does not see $HIDDEN/data, node 2 advertises
#                                           two fake GPUs, see below)
#   scripts/engines/swarm-netns.sh down     stop every node and the registry, remove namespaces and state
#   scripts/engines/swarm-netns.sh load IMG [N...]  copy a local image of the main engine to nodes N
#                                           (default every node; skipped where the same image is there)
#
# The registry (Debian's docker-registry, installed by scripts/ensure-docker.sh)
# runs in a namespace of its own on the same bridge, at $SUBNET.2:5000, with its
# storage under $STATE/registry; every node trusts it over plain HTTP
# (--insecure-registry). Only the nodes reach it, not the host's engine: push
# from a node (`docker -H unix://$RUN/node1/docker.sock push $SUBNET.2:5000/...`).
#
# DDE_SWARM_PREFIX (default dde-sw) names the namespaces, state and sockets, so
# separate swarms can run side by side (each has its own bridge namespace).
#
# Addresses are only those of the namespaces made here (10.213.0.0/24).
set -euo pipefail
# Daemons started here outlive this script: they get / as working directory, not the
# caller's (a test checkout deleted later left a daemon in a deleted folder,
# where conmon fails with "Failed to get working directory" and every run breaks).
cd /

PROG=swarm-netns
PREFIX=${DDE_SWARM_PREFIX:-dde-sw}
STATE=${DDE_SWARM_STATE:-/var/lib/$PREFIX}
RUN=${DDE_SWARM_RUN:-/run/$PREFIX}
SUBNET=10.213.0
BR_NS=$PREFIX-br
REG_NS=$PREFIX-reg
REGISTRY=$SUBNET.2:5000
HIDDEN=${DDE_SWARM_HIDDEN:-/srv/$PREFIX-hidden}  # present on the host, empty on the last node
# Node 2 advertises two fake GPUs as Swarm generic resources (what a GPU node's
# daemon.json `node-generic-resources` does, docs/scale-out.md): the scheduler
# places `docker.gpus N` by them and hands the task their ids. No GPU runtime
# here, so the stage sees the ids, not devices.
GPU_KIND=NVIDIA-GPU
GPU_NODE=2
GPU_IDS=(GPU-dde00000-0000-4000-8000-000000000001 GPU-dde00000-0000-4000-8000-000000000002)

die() { echo "$PROG: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, dockerd)"

node_sock() { echo "unix://$RUN/node$1/docker.sock"; }
ndocker() { local n=$1; shift; docker -H "$(node_sock "$n")" "$@"; }

# node_args N: the dockerd flags that differ per node, or may change (stale_node)
node_args() {
    local id
    echo "--insecure-registry=$REGISTRY"
    if [ "$1" -eq "$GPU_NODE" ]; then
        for id in "${GPU_IDS[@]}"; do echo "--node-generic-resource=$GPU_KIND=$id"; done
    fi
}

# stale_node N: node N answers but was started without its current flags (a swarm
# kept up from before a change of this script): it must be restarted
stale_node() {
    local want have
    want=$(node_args "$1" | sort | tr '\n' ' ')
    have=$(tr '\0' '\n' < "/proc/$(cat "$RUN/node$1/docker.pid")/cmdline" | grep -E '^--(node-generic-resource|insecure-registry)=' | sort | tr '\n' ' ')
    [ "$want" != "$have" ]
}

stop_node() { stop_pid "$RUN/node$1/docker.pid"; }

stop_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

wait_node() {
    local n=$1 i
    for i in $(seq 1 120); do
        # a restarted node is "pending" while it rejoins: not a node to `swarm join`
        case "$(ndocker "$n" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" in
            "" | pending) sleep 0.5 ;;
            *) return 0 ;;
        esac
    done
    tail -n 30 "$STATE/node$n.log" >&2
    die "node $n did not answer within 60 s"
}

# wire_ns NS HOST_VETH NS_VETH ADDR: a namespace with eth0 at ADDR on the bridge (once)
wire_ns() {
    local ns=$1 host_end=$2 ns_end=$3 addr=$4
    ip netns list | grep -qw "$ns" && return 0
    ip netns add "$ns"
    ip link add "$host_end" type veth peer name "$ns_end"
    ip link set "$host_end" netns "$BR_NS"
    ip -n "$BR_NS" link set "$host_end" master br0 up
    ip link set "$ns_end" netns "$ns"
    ip -n "$ns" link set "$ns_end" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

registry_answers() {
    nsenter --net="/var/run/netns/$REG_NS" bash -c "exec 3<>/dev/tcp/${REGISTRY%:*}/${REGISTRY#*:}" 2>/dev/null
}

registry_up() {
    local binary i
    binary=$(command -v docker-registry) || die "docker-registry missing: run scripts/ensure-docker.sh first"
    wire_ns "$REG_NS" "$PREFIX-hr" "$PREFIX-r" "${REGISTRY%:*}"
    registry_answers && return 0
    mkdir -p "$STATE/registry/data"
    printf '%s\n' 'version: 0.1' 'log: {level: error}' \
        "storage: {filesystem: {rootdirectory: $STATE/registry/data}}" "http: {addr: $REGISTRY}" \
        >"$STATE/registry/config.yml"
    setsid nsenter --net="/var/run/netns/$REG_NS" "$binary" serve "$STATE/registry/config.yml" \
        >"$STATE/registry.log" 2>&1 </dev/null &
    echo $! >"$RUN/registry.pid"
    for i in $(seq 1 60); do
        registry_answers && return 0
        sleep 0.5
    done
    tail -n 20 "$STATE/registry.log" >&2
    die "the registry did not answer at $REGISTRY within 30 s"
}

up() {
    local count=${1:-3} n
    command -v dockerd >/dev/null || die "dockerd missing: run scripts/ensure-docker.sh first"
    mkdir -p "$STATE" "$RUN"
    if ! ip netns list | grep -qw "$BR_NS"; then
        ip netns add "$BR_NS"
        ip -n "$BR_NS" link add br0 type bridge
        ip -n "$BR_NS" link set br0 up
        ip -n "$BR_NS" link set lo up
    fi
    registry_up
    for n in $(seq 1 "$count"); do
        local ns=$PREFIX-$n
        wire_ns "$ns" "$PREFIX-h$n" "$PREFIX-n$n" "$SUBNET.$((10 + n))"
        if ndocker "$n" info >/dev/null 2>&1 && stale_node "$n"; then
            echo "$PROG: restarting node $n (its flags changed)" >&2
            stop_node "$n"
        fi
        if ! ndocker "$n" info >/dev/null 2>&1; then
            mkdir -p "$STATE/node$n" "$RUN/node$n/exec"
            # --iptables=false --bridge=none: the node has no NAT and no docker0;
            # stage containers use the host network of the node's namespace.
            # The last node gets a mount namespace of its own in which $HIDDEN is
            # an empty tmpfs: a path every other node has is missing there, as on
            # a node whose NFS mount failed (tests of the missing-path error).
            local wrap=()
            if [ "$n" -eq "$count" ] && [ "$count" -gt 1 ]; then
                mkdir -p "$HIDDEN/data"
                wrap=(unshare -m --propagation private sh -c 'mount -t tmpfs dde-sw-hidden "$0" && exec "$@"' "$HIDDEN")
            fi
            setsid nsenter --net="/var/run/netns/$ns" "${wrap[@]}" dockerd \
                -H "$(node_sock "$n")" --data-root "$STATE/node$n" --exec-root "$RUN/node$n/exec" \
                --pidfile "$RUN/node$n/docker.pid" --iptables=false --bridge=none --ip-masq=false \
                --cgroup-parent "$PREFIX-node$n" $(node_args "$n") >"$STATE/node$n.log" 2>&1 < /dev/null &
        fi
    done
    for n in $(seq 1 "$count"); do wait_node "$n"; done
    if [ "$(ndocker 1 info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        ndocker 1 swarm init --advertise-addr "$SUBNET.11" >/dev/null
    fi
    local token
    token=$(ndocker 1 swarm join-token -q worker)
    for n in $(seq 2 "$count"); do
        if [ "$(ndocker "$n" info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
            ndocker "$n" swarm join --token "$token" "$SUBNET.11:2377" >/dev/null
        fi
    done
    echo "DDE_SWARM_REGISTRY=$REGISTRY"
    echo "DOCKER_HOST=$(node_sock 1)"
}

down() {
    local pidfile n ns
    for pidfile in "$RUN"/node*/docker.pid; do
        [ -e "$pidfile" ] || continue
        n=$(basename "$(dirname "$pidfile")"); stop_node "${n#node}"
    done
    stop_pid "$RUN/registry.pid"
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
        ip netns del "$ns"
    done
    # containers' overlay mounts under the data roots must go before the folders
    grep " $STATE/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    grep " $RUN/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$STATE" "$RUN" "$HIDDEN"
}

load() {
    # load IMAGE [N...]: copy IMAGE of the main engine to nodes N (default: every node), skipping
    # a node that already holds the same image ID (a `docker save | load` of the runner takes ~10 s)
    local image=$1 n id main=${DDE_MAIN_DOCKER_HOST:-unix:///var/run/docker.sock}
    shift
    local nodes=("$@")
    if [ "${#nodes[@]}" -eq 0 ]; then
        for sock in "$RUN"/node*/docker.sock; do
            n=$(basename "$(dirname "$sock")"); nodes+=("${n#node}")
        done
    fi
    id=$(docker -H "$main" image inspect -f '{{.Id}}' "$image")
    for n in "${nodes[@]}"; do
        [ "$(ndocker "$n" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" = "$id" ] && continue
        docker -H "$main" save "$image" | ndocker "$n" load -q >/dev/null
    done
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    load) shift; [ $# -ge 1 ] || die "usage: $0 load IMAGE [NODE...]"; load "$@" ;;
    *) die "usage: $0 up [N] | down | load IMAGE [NODE...]" ;;
esac
