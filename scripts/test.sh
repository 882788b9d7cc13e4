#!/usr/bin/env bash
# Run the test suite on this machine, from nothing: starts a Docker Engine if
# none answers, builds the offline test images, makes the venv, runs pytest.
#
# With no arguments, the whole suite in two passes (the README's test command):
#   python -m pytest -n $DDE_TEST_WORKERS --dist loadfile -m "not swarm"
#   python -m pytest -m swarm
# Why workers: a test mostly waits on dvc start-ups and containers, so
# pytest-xdist overlaps them (loadfile: a module's tests and its module-scoped
# fixtures stay on one worker). Why the second pass: the Swarm tests share one
# 3-node swarm per session and run alone.
# With arguments, one `python -m pytest ARGS` (serial unless ARGS has -n),
# e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-docker.sh
scripts/build-images.sh
VENV=$(scripts/venv.sh)
WORKERS=${DDE_TEST_WORKERS:-2}

run_pytest() {
    local rc=0
    "$VENV/bin/python" -m pytest "$@" || rc=$?
    # pytest exits 5 when it collected no test: that proves nothing, so it is a failure
    [ "$rc" -eq 5 ] && echo "test: pytest collected no tests" >&2 && rc=1
    return "$rc"
}

if [ "$#" -gt 0 ]; then
    run_pytest "$@"
    exit
fi
rc=0 swarm_rc=0
run_pytest -n "$WORKERS" --dist loadfile -m "not swarm" || rc=$?
run_pytest -m swarm || swarm_rc=$?
[ "$rc" -ne 0 ] || rc=$swarm_rc
exit "$rc"
