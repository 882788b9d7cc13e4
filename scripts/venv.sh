#!/usr/bin/env bash
# Create (once) and update the project's virtualenv; print its path.
#
# Why /usr/bin/python3: the tests also run DVC as a non-root user, and a
# python under /root (mode 700) is not executable by that user. As root the
# venv goes to /opt/dvc-docker-exec/venv (world-readable), else to .venv.
# Dependencies are re-installed only when setup.cfg/setup.py change.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${DDE_VENV:-}" ]; then VENV=$DDE_VENV
elif [ "$(id -u)" -eq 0 ]; then VENV=/opt/dvc-docker-exec/venv
else VENV=$HERE/.venv
fi
PY=${DDE_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3)

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >&2
        else
            echo "venv: $PY lacks venv/ensurepip: install python3-venv" >&2; exit 1
        fi
    fi
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" >&2
fi

pip_quiet() {
    # pip's output goes to a log; shown only when it fails
    if ! "$VENV/bin/python" -m pip install -q "$@" > "$VENV/pip.log" 2>&1; then
        tail -n 40 "$VENV/pip.log" >&2; echo "venv: pip install $* failed" >&2; exit 1
    fi
}

stamp=$(cat "$HERE/setup.cfg" "$HERE/setup.py" "$HERE/pyproject.toml" | sha1sum | cut -c1-40)
if [ "$(cat "$VENV/.dde-stamp" 2>/dev/null)" != "$stamp" ]; then
    pip_quiet --upgrade pip
    pip_quiet -e "${HERE}[tests]" tox
    echo "$stamp" > "$VENV/.dde-stamp"
elif ! (cd / && "$VENV/bin/python" -c 'import dvc_docker_exec, sys; sys.exit(not dvc_docker_exec.__file__.startswith(sys.argv[1]))' "$HERE") 2>/dev/null; then
    # (from /: the checkout in the working folder would hide a stale editable install)
    # same venv, another checkout (e.g. a fresh CI clone): point the editable install here
    pip_quiet --no-deps -e "$HERE"
fi
chmod -R a+rX "$VENV" 2>/dev/null || true
echo "$VENV"
