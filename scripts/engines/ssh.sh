#!/usr/bin/env bash
# Start (once) an sshd on loopback for a test user of our own who may use the
# Docker socket, so that DOCKER_HOST=ssh://... reaches the local daemon the
# way it would reach a remote one (`docker system dial-stdio` over ssh).
# Idempotent.  Prints the ssh:// URL on stdout; the client key and a
# known_hosts file are in $DIR (the caller passes them to ssh via ~/.ssh).
#
# Environment: DDE_SSH_PORT (default 2223), DDE_SSH_USER (default dde-ssh)
set -euo pipefail
PROG=engines/ssh
PORT=${DDE_SSH_PORT:-2223}
USER_NAME=${DDE_SSH_USER:-dde-ssh}
DIR=/var/lib/dde-ssh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/engines/lib.sh
. "$HERE/lib.sh"
need_root
ensure_packages openssh-server openssh-client

id "$USER_NAME" >/dev/null 2>&1 || { useradd --create-home --shell /bin/sh "$USER_NAME"; status "created user $USER_NAME"; }
# a "!" password (useradd's default) is a locked account, which sshd refuses without PAM; "*" only disables passwords
usermod -p '*' "$USER_NAME"
sock_group=$(stat -c %G /var/run/docker.sock)
[ "$sock_group" = root ] || usermod -aG "$sock_group" "$USER_NAME"
home=$(getent passwd "$USER_NAME" | cut -d: -f6)
mkdir -p "$DIR"
[ -f "$DIR/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_key"
[ -f "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/client_key"
install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "$home/.ssh"
install -m 600 -o "$USER_NAME" -g "$USER_NAME" "$DIR/client_key.pub" "$home/.ssh/authorized_keys"
echo "[127.0.0.1]:$PORT $(cat "$DIR/host_key.pub")" >"$DIR/known_hosts"
cat >"$DIR/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_key
PidFile $DIR/sshd.pid
AllowUsers $USER_NAME
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
CFG
mkdir -p /run/sshd
if [ -s "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; then
    status "sshd already listening on 127.0.0.1:$PORT"
else
    "$(command -v sshd || echo /usr/sbin/sshd)" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
    status "started sshd on 127.0.0.1:$PORT for $USER_NAME"
fi
answers() { ssh -i "$DIR/client_key" -o UserKnownHostsFile="$DIR/known_hosts" -o BatchMode=yes \
    -p "$PORT" "$USER_NAME@127.0.0.1" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
wait_until answers 20 "$DIR/sshd.log" "ssh $USER_NAME@127.0.0.1:$PORT docker version does not answer"
echo "ssh://$USER_NAME@127.0.0.1:$PORT"
